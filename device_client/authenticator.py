"""A WebAuthn platform authenticator in software, for the reference client.

What a phone's platform authenticator does, by the WebAuthn Level 3 and
CTAP2 formats: an ES256 (P-256) key pair per credential, `none`
attestation, the flags user present and user verified (the phone's own
unlock stands for the latter), a signature counter, and the client data a
browser would write for `origin`. The browser tests use Chromium's virtual
authenticator instead; this one lets the Python client (and the tests that
drive it) bind a phone and approve on it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any, Final

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

FLAG_UP: Final = 0x01
FLAG_UV: Final = 0x04
FLAG_AT: Final = 0x40
ES256: Final = -7


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class _Credential:
    credential_id: bytes
    rp_id: str
    user_handle: bytes
    key: ec.EllipticCurvePrivateKey = field(repr=False)
    sign_count: int = 0


@dataclass
class SoftAuthenticator:
    """Credentials are kept in memory, as a phone's secure element would."""

    origin: str
    #: Whether the user verifies (False: a phone with no screen lock).
    user_verified: bool = True
    _credentials: dict[bytes, _Credential] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        return f"SoftAuthenticator({self.origin!r}, {len(self._credentials)} credentials)"

    def _client_data(self, kind: str, challenge: str) -> bytes:
        return json.dumps(
            {"type": kind, "challenge": challenge, "origin": self.origin, "crossOrigin": False},
            separators=(",", ":"),
        ).encode()

    def _flags(self) -> int:
        return FLAG_UP | (FLAG_UV if self.user_verified else 0)

    def create(self, options: dict[str, Any]) -> dict[str, Any]:
        """navigator.credentials.create(): the PublicKeyCredential as JSON."""
        rp_id = options["rp"]["id"]
        if not any(p.get("alg") == ES256 for p in options.get("pubKeyCredParams", [])):
            raise ValueError("the relying party does not accept ES256")
        excluded = {unb64url(c["id"]) for c in options.get("excludeCredentials", [])}
        if excluded & set(self._credentials):
            raise ValueError("InvalidStateError: already registered with this relying party")
        key = ec.generate_private_key(ec.SECP256R1())
        numbers = key.public_key().public_numbers()
        cose = cbor2.dumps(
            {
                1: 2,
                3: ES256,
                -1: 1,
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        )
        credential_id = secrets.token_bytes(32)
        cred = _Credential(credential_id, rp_id, unb64url(options["user"]["id"]), key)
        self._credentials[credential_id] = cred
        auth_data = (
            hashlib.sha256(rp_id.encode()).digest()
            + bytes([self._flags() | FLAG_AT])
            + cred.sign_count.to_bytes(4, "big")
            + bytes(16)  # AAGUID: none
            + len(credential_id).to_bytes(2, "big")
            + credential_id
            + cose
        )
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        client_data = self._client_data("webauthn.create", options["challenge"])
        return {
            "id": b64url(credential_id),
            "rawId": b64url(credential_id),
            "type": "public-key",
            "authenticatorAttachment": "platform",
            "clientExtensionResults": {},
            "response": {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(attestation),
                "transports": ["internal"],
            },
        }

    def get(self, options: dict[str, Any]) -> dict[str, Any]:
        """navigator.credentials.get(): an assertion over `options.challenge`."""
        rp_id = options.get("rpId") or ""
        allowed = [unb64url(c["id"]) for c in options.get("allowCredentials", [])]
        candidates = [
            c
            for c in self._credentials.values()
            if c.rp_id == rp_id and (not allowed or c.credential_id in allowed)
        ]
        if not candidates:
            raise ValueError("NotAllowedError: no credential for this relying party")
        return self.assert_with(candidates[0].credential_id, options["challenge"], rp_id)

    def assert_with(self, credential_id: bytes, challenge: str, rp_id: str) -> dict[str, Any]:
        """An assertion by one credential over a base64url challenge."""
        cred = self._credentials[credential_id]
        cred.sign_count += 1
        auth_data = (
            hashlib.sha256(rp_id.encode()).digest()
            + bytes([self._flags()])
            + cred.sign_count.to_bytes(4, "big")
        )
        client_data = self._client_data("webauthn.get", challenge)
        signature = cred.key.sign(
            auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
        )
        return {
            "id": b64url(credential_id),
            "rawId": b64url(credential_id),
            "type": "public-key",
            "authenticatorAttachment": "platform",
            "clientExtensionResults": {},
            "response": {
                "clientDataJSON": b64url(client_data),
                "authenticatorData": b64url(auth_data),
                "signature": b64url(signature),
                "userHandle": b64url(cred.user_handle),
            },
        }

    @property
    def credential_ids(self) -> list[bytes]:
        return list(self._credentials)

    @property
    def rp_id(self) -> str:
        """The relying party of the first credential (one service per phone here)."""
        return next(iter(self._credentials.values())).rp_id
