"""Credentials: the owner's cloud key in the HSM and its certificate, the
one-time transport keys the key password travels under, and the wire forms
of that password (service.py, transport.py)."""

from cloudsign.credentials.api import DEFAULT_ALGORITHM, transport_key_json
from cloudsign.credentials.service import (
    Credential,
    CredentialService,
    CredentialSummary,
    IssuedCredential,
)
from cloudsign.credentials.transport import (
    TransportKey,
    TransportKeys,
    parse_transport_message,
    parse_transport_pin,
)

__all__ = [
    "DEFAULT_ALGORITHM",
    "Credential",
    "CredentialService",
    "CredentialSummary",
    "IssuedCredential",
    "TransportKey",
    "TransportKeys",
    "parse_transport_message",
    "parse_transport_pin",
    "transport_key_json",
]
