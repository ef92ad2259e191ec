"""Why a certificate is revoked: the CA's grounds mapped onto RFC 5280
CRLReason codes (the names asn1crypto uses, which `certificates.revocation_reason`
stores).

| ground (operator input) | CRLReason                | when                              |
|--------------------------|--------------------------|-----------------------------------|
| `key-compromise`         | keyCompromise (1)        | owner key/password exposed        |
| `ca-compromise`          | cACompromise (2)         | the issuing CA key is compromised |
| `affiliation-changed`    | affiliationChanged (3)   | organisation/name/e-mail changed  |
| `superseded`             | superseded (4)           | replaced by a new certificate     |
| `ca-termination`         | cessationOfOperation (5) | the CA stops operating            |
| `key-deletion`           | cessationOfOperation (5) | owner destroyed the cloud key     |
| `court-decision`         | privilegeWithdrawn (9)   | a court withdraws the right to    |
|                          |                          | sign with this certificate        |
| `owner-request`          | unspecified (0)          | owner asks, no specific ground    |

The RFC 5280 camelCase names and the asn1crypto snake_case names are
accepted too. certificateHold and removeFromCRL are refused: this CA does
not suspend certificates, a revocation is final.
"""

from __future__ import annotations

import enum
import re
from typing import Final

from cloudsign.errors import ValidationError


class RevocationReason(enum.StrEnum):
    """RFC 5280 CRLReason, valued by the asn1crypto name."""

    UNSPECIFIED = "unspecified"
    KEY_COMPROMISE = "key_compromise"
    CA_COMPROMISE = "ca_compromise"
    AFFILIATION_CHANGED = "affiliation_changed"
    SUPERSEDED = "superseded"
    CESSATION_OF_OPERATION = "cessation_of_operation"
    PRIVILEGE_WITHDRAWN = "privilege_withdrawn"

    @property
    def rfc_name(self) -> str:
        if self is RevocationReason.CA_COMPROMISE:
            return "cACompromise"
        head, *rest = self.value.split("_")
        return head + "".join(w.capitalize() for w in rest)


#: The CA's grounds for revocation, as operators type them.
GROUNDS: Final[dict[str, RevocationReason]] = {
    "key-compromise": RevocationReason.KEY_COMPROMISE,
    "ca-compromise": RevocationReason.CA_COMPROMISE,
    "affiliation-changed": RevocationReason.AFFILIATION_CHANGED,
    "superseded": RevocationReason.SUPERSEDED,
    "ca-termination": RevocationReason.CESSATION_OF_OPERATION,
    "key-deletion": RevocationReason.CESSATION_OF_OPERATION,
    "court-decision": RevocationReason.PRIVILEGE_WITHDRAWN,
    "owner-request": RevocationReason.UNSPECIFIED,
}

_CAMEL: Final = re.compile(r"(?<=[a-z])(?=[A-Z])")


def parse_reason(value: object) -> RevocationReason:
    """A ground, an RFC 5280 name or an asn1crypto name -> the reason code."""
    if isinstance(value, RevocationReason):
        return value
    if not isinstance(value, str) or not value.strip():
        raise ValidationError("reason is required", field="reason")
    text = value.strip()
    if text in GROUNDS:
        return GROUNDS[text]
    snake = _CAMEL.sub("_", text.replace("cACompromise", "caCompromise")).lower()
    snake = snake.replace("-", "_")
    try:
        return RevocationReason(snake)
    except ValueError as e:
        choices = ", ".join(GROUNDS)
        raise ValidationError(
            f"unknown revocation reason {text!r}; use one of {choices}", field="reason"
        ) from e
