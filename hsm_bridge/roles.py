"""What the service's features may ask of the HSM, as structural types.

A feature that seals TOTP seeds needs `Sealer`, not the PKCS#11 class with
its sessions and master key; depending on the narrowest role keeps that
visible in signatures and lets tests pass fakes. `HsmBridge` satisfies every
role (checked in tests/hsm). Lifecycle (`start`/`close`) stays with whoever
owns the bridge and is no role's business.

The roles are `runtime_checkable`, but `isinstance` then only checks that
the methods exist; signatures are checked by mypy.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

from hsm_bridge.activation import SadKey
from hsm_bridge.algorithms import HashAlgorithm, KeyAlgorithm, SignatureScheme
from hsm_bridge.custody import CreatedKey, UnlockedKey
from hsm_bridge.transport import TransportMessage


@runtime_checkable
class KeyCustody(Protocol):
    """Owner keys behind the owner's password: transport keys, creation,
    unlocking, signing with an unlocked key, and the key bound to a SAD
    between authorisation and signature (`hsm_bridge.activation`)."""

    async def create_transport_key(self, transport_key_id: str) -> bytes: ...

    async def destroy_transport_key(self, transport_key_id: str) -> bool: ...

    async def create_owner_key(
        self, message: TransportMessage, algorithm: KeyAlgorithm, credential_id: str
    ) -> CreatedKey: ...

    async def unlock_owner_key(
        self, message: TransportMessage, credential_id: str, algorithm: KeyAlgorithm, blob: bytes
    ) -> UnlockedKey: ...

    async def rewrap_owner_key(self, key: UnlockedKey, message: TransportMessage) -> bytes: ...

    async def sign_with_unlocked(
        self,
        key: UnlockedKey,
        digests: Sequence[bytes],
        hash_alg: HashAlgorithm,
        scheme: SignatureScheme,
    ) -> list[bytes]: ...

    async def bind_to_sad(
        self, key: UnlockedKey, sad_id: str, token: bytes, expires_at: datetime
    ) -> SadKey: ...

    async def sign_with_sad(
        self,
        sad: SadKey,
        token: bytes,
        digests: Sequence[bytes],
        hash_alg: HashAlgorithm,
        scheme: SignatureScheme,
    ) -> list[bytes]: ...

    async def rebind_sad(
        self, sad: SadKey, token: bytes, new_token: bytes, expires_at: datetime
    ) -> SadKey: ...

    async def destroy_sad_key(self, sad_id: str, expires_at: int) -> bool: ...

    async def sweep_sad_keys(self, now: datetime) -> int: ...


@runtime_checkable
class ServiceKeys(Protocol):
    """The service's own long-lived keys (CA, OCSP, TSA, audit log, anchoring)."""

    async def generate_signing_key(self, label: str, algorithm: KeyAlgorithm) -> bytes: ...

    async def public_key_info(self, label: str, algorithm: KeyAlgorithm) -> bytes: ...

    async def sign_digest(
        self,
        label: str,
        algorithm: KeyAlgorithm,
        digest: bytes,
        hash_alg: HashAlgorithm,
        scheme: SignatureScheme,
    ) -> bytes: ...

    async def sign_message(self, label: str, message: bytes) -> bytes: ...

    async def has_key(self, label: str) -> bool: ...


@runtime_checkable
class Sealer(Protocol):
    """Confidentiality and integrity of small stored secrets (TOTP seeds,
    face templates) under the HSM's per-purpose sealing keys."""

    async def seal(self, purpose: str, plaintext: bytes, aad: bytes) -> bytes: ...

    async def unseal(self, purpose: str, sealed: bytes, aad: bytes) -> bytes: ...


@runtime_checkable
class KeyedHasher(Protocol):
    """HMAC-SHA256 under the HSM's per-purpose secrets (pseudonymous tags)."""

    async def hmac_sha256(self, purpose: str, data: bytes) -> bytes: ...
