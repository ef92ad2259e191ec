"""The possession factor: a TOTP code, or an assertion of a bound device.

Portal-only citizens prove possession with a TOTP code; app users with a
WebAuthn assertion of a phone bound to their account (mobile_api). Either is
accepted wherever the other is, once the owner has set it up: the two are
the same factor, and every check of either is counted by the guard.

The device check lives in `mobile_api` (which imports this package, never
the reverse): the app registers it as the accounts' `DeviceVerifier`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from cloudsign.errors import ValidationError
from cloudsign.web.inputs import Fields


@dataclass(frozen=True)
class DeviceProof:
    """A WebAuthn assertion over a challenge the service issued.

    `credential` is the PublicKeyCredential as JSON (id, rawId, response,
    type); `challenge_id` names the one-time challenge it signed."""

    challenge_id: str
    credential: Mapping[str, Any] = field(repr=False)

    def __repr__(self) -> str:
        return f"DeviceProof(challenge_id={self.challenge_id!r})"


#: What a request presents for the possession factor.
Possession = str | DeviceProof


class DeviceVerifier(Protocol):
    async def verify(self, owner_id: str, proof: DeviceProof, purpose: str) -> str:
        """The id of the bound device whose assertion this is, for an unused
        challenge issued to `owner_id` for `purpose`; FactorError otherwise."""
        ...

    async def has_devices(self, owner_id: str) -> bool: ...

    async def issue_challenge(self, owner_id: str | None, purpose: str) -> tuple[str, bytes]:
        """A one-time challenge (id, bytes) for an assertion for `purpose`."""
        ...


#: base64url without padding, as WebAuthn's JSON forms use it.
B64URL = re.compile(r"^[A-Za-z0-9_-]*$")
_RESPONSE_LIMITS: Final = {
    # assertion
    "clientDataJSON": 4096,
    "authenticatorData": 4096,
    "signature": 1024,
    "userHandle": 256,
    # registration
    "attestationObject": 16384,
}
_ASSERTION: Final = ("clientDataJSON", "authenticatorData", "signature")
_REGISTRATION: Final = ("clientDataJSON", "attestationObject")


def webauthn_credential(fields: Fields, *, registration: bool) -> dict[str, Any]:
    """A PublicKeyCredential's JSON (WebAuthn Level 3 `toJSON()`), checked
    for shape and size before the WebAuthn library reads it."""
    fields.only(
        {"id", "rawId", "type", "response", "authenticatorAttachment", "clientExtensionResults"}
    )
    if fields.text("type", max_len=16) != "public-key":
        raise ValidationError("type must be public-key", field=fields.name("type"))
    credential: dict[str, Any] = {
        "id": fields.text("id", max_len=1400, pattern=B64URL),
        "rawId": fields.text("rawId", max_len=1400, pattern=B64URL),
        "type": "public-key",
        "clientExtensionResults": {},
    }
    attachment = fields.optional_text("authenticatorAttachment", max_len=32)
    if attachment is not None:
        credential["authenticatorAttachment"] = attachment
    response = fields.obj("response")
    needed = _REGISTRATION if registration else _ASSERTION
    allowed = set(needed) | ({"transports"} if registration else {"userHandle"})
    response.only(allowed)
    out: dict[str, Any] = {}
    for key in sorted(allowed - {"transports"}):
        if key in needed or key in response:
            out[key] = response.text(key, max_len=_RESPONSE_LIMITS[key], pattern=B64URL)
    if registration and "transports" in response:
        out["transports"] = response.texts("transports", max_items=8, max_len=32)
    credential["response"] = out
    return credential


def device_proof(fields: Fields) -> DeviceProof:
    """`{challenge_id, credential}`: an assertion over an issued challenge."""
    fields.only({"challenge_id", "credential"})
    return DeviceProof(
        challenge_id=fields.text("challenge_id", max_len=64),
        credential=webauthn_credential(fields.obj("credential"), registration=False),
    )


def possession_from(body: Fields) -> Possession | None:
    """`otp` (a TOTP code) or `device` (a bound device's assertion), not both."""
    if "device" in body:
        if "otp" in body:
            raise ValidationError("send otp or device, not both", field="device")
        return device_proof(body.obj("device"))
    return body.otp()
