"""The log's two HSM keys and the library signer Protocols they implement.

* `cloudsign-audit-log` — Ed25519; signs day checkpoints (signed notes) as
  :class:`HsmNoteSigner` (audit_chain's `AsyncNoteSigner`).
* `cloudsign-audit-eth` — secp256k1; the Ethereum account that owns the
  anchoring contract, as :class:`HsmTransactionSigner` (`AsyncTransactionSigner`).

Both are generated once, non-extractable, in the token; private halves never
leave it.
"""

from __future__ import annotations

import logging
from typing import Final

from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_public_key,
)

from audit_chain import NoteVerifier, ed25519_key_id
from hsm_bridge import (
    HsmConfigurationError,
    KeyAlgorithm,
    ServiceKeys,
    SignatureScheme,
    hash_algorithm,
)

log = logging.getLogger(__name__)

NOTE_KEY_LABEL: Final = "cloudsign-audit-log"
ETH_KEY_LABEL: Final = "cloudsign-audit-eth"


async def ensure_key(bridge: ServiceKeys, label: str, algorithm: KeyAlgorithm) -> bytes:
    """The key's SPKI, generating the key pair on first use."""
    if not await bridge.has_key(label):
        try:
            await bridge.generate_signing_key(label, algorithm)
            log.info("generated audit key %s (%s) in the HSM", label, algorithm.value)
        except HsmConfigurationError:
            pass  # another process generated it first
    return await bridge.public_key_info(label, algorithm)


async def ensure_audit_keys(bridge: ServiceKeys) -> list[str]:
    """The log's checkpoint key and the anchoring key, generated if missing;
    returns the labels it generated (see `cloudsign.instance.initialise`)."""
    made = []
    for label, algorithm in (
        (NOTE_KEY_LABEL, KeyAlgorithm.ED25519),
        (ETH_KEY_LABEL, KeyAlgorithm.EC_SECP256K1),
    ):
        if not await bridge.has_key(label):
            await ensure_key(bridge, label, algorithm)
            made.append(label)
    return made


class HsmNoteSigner:
    """Ed25519 checkpoint signer in the HSM; `name` is the log origin."""

    def __init__(self, bridge: ServiceKeys, name: str, public_key: bytes) -> None:
        self._bridge = bridge
        self._name = name
        self._public = public_key
        self._key_id = ed25519_key_id(name, public_key)

    @classmethod
    async def create(cls, bridge: ServiceKeys, name: str) -> HsmNoteSigner:
        spki = await ensure_key(bridge, NOTE_KEY_LABEL, KeyAlgorithm.ED25519)
        key = load_der_public_key(spki)
        if not isinstance(key, ed25519.Ed25519PublicKey):
            raise HsmConfigurationError(f"{NOTE_KEY_LABEL} is not an Ed25519 key")
        return cls(bridge, name, key.public_bytes(Encoding.Raw, PublicFormat.Raw))

    def __repr__(self) -> str:
        return f"HsmNoteSigner(name={self._name!r}, key_id={self._key_id.hex()})"

    @property
    def name(self) -> str:
        return self._name

    @property
    def key_id(self) -> bytes:
        return self._key_id

    @property
    def verifier(self) -> NoteVerifier:
        return NoteVerifier(self._name, self._public)

    async def sign(self, message: bytes) -> bytes:
        return await self._bridge.sign_message(NOTE_KEY_LABEL, message)


class HsmTransactionSigner:
    """secp256k1 digest signer in the HSM (raw r||s, no further hashing)."""

    _SHA256: Final = hash_algorithm("sha256")  # only names the 32-byte digest length

    def __init__(self, bridge: ServiceKeys, public_key: bytes) -> None:
        self._bridge = bridge
        self._public = public_key

    @classmethod
    async def create(cls, bridge: ServiceKeys) -> HsmTransactionSigner:
        spki = await ensure_key(bridge, ETH_KEY_LABEL, KeyAlgorithm.EC_SECP256K1)
        key = load_der_public_key(spki)
        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(
            key.curve, ec.SECP256K1
        ):
            raise HsmConfigurationError(f"{ETH_KEY_LABEL} is not a secp256k1 key")
        return cls(bridge, key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint))

    def __repr__(self) -> str:
        return "HsmTransactionSigner()"

    @property
    def public_key(self) -> bytes:
        return self._public

    async def sign_digest(self, digest: bytes) -> tuple[int, int]:
        raw = await self._bridge.sign_digest(
            ETH_KEY_LABEL,
            KeyAlgorithm.EC_SECP256K1,
            digest,
            self._SHA256,
            SignatureScheme.ECDSA_RAW,
        )
        half = len(raw) // 2
        return int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
