"""HSM secrets that never sign: sealing keys and keyed hashes.

Owns the sealing format (`nonce || AES-GCM ciphertext || tag`, under the
non-extractable key `cloudsign-seal-<purpose>`; TOTP seeds, face templates
and the outer layer of owner-key blobs) and HMAC-SHA256 under
`cloudsign-hmac-<purpose>` (pseudonymous owner tags in the public audit
log). `provision` creates these keys.
"""

from __future__ import annotations

import os
from typing import Any, Final

from pkcs11 import Mechanism, ObjectClass
from pkcs11.exceptions import PKCS11Error
from pkcs11.mechanisms import GCMParams

from hsm_bridge.errors import KeyBlobError
from hsm_bridge.session import HsmSession

HMAC_KEY_PREFIX: Final = "cloudsign-hmac-"
SEALING_KEY_PREFIX: Final = "cloudsign-seal-"
GCM_NONCE_BYTES: Final = 12
GCM_TAG_BITS: Final = 128


class HsmSealing(HsmSession):
    """Sealing and keyed hashes under the token's per-purpose secrets."""

    async def hmac_sha256(self, purpose: str, data: bytes) -> bytes:
        """HMAC-SHA256 under the HSM's secret for `purpose`; destroying that
        secret unlinks every tag made with it."""
        return await self._call(self._hmac, purpose, data)

    def _hmac(self, purpose: str, data: bytes) -> bytes:
        key = self._cached_key(ObjectClass.SECRET_KEY, HMAC_KEY_PREFIX + purpose)
        return bytes(key.sign(data, mechanism=Mechanism.SHA256_HMAC))

    def _sealing_key(self, purpose: str) -> Any:
        return self._cached_key(ObjectClass.SECRET_KEY, SEALING_KEY_PREFIX + purpose)

    async def seal(self, purpose: str, plaintext: bytes, aad: bytes) -> bytes:
        """AES-GCM under the HSM's sealing key for `purpose`; nonce || ct || tag."""
        return await self._call(self._seal, purpose, plaintext, aad)

    def _seal(self, purpose: str, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(GCM_NONCE_BYTES)
        ct = self._sealing_key(purpose).encrypt(
            plaintext,
            mechanism=Mechanism.AES_GCM,
            mechanism_param=GCMParams(nonce, aad, GCM_TAG_BITS),
        )
        return nonce + bytes(ct)

    async def unseal(self, purpose: str, sealed: bytes, aad: bytes) -> bytes:
        return await self._call(self._unseal, purpose, sealed, aad)

    def _unseal(self, purpose: str, sealed: bytes, aad: bytes) -> bytes:
        if len(sealed) < GCM_NONCE_BYTES + GCM_TAG_BITS // 8:
            raise KeyBlobError("sealed value too short")
        try:
            return bytes(
                self._sealing_key(purpose).decrypt(
                    sealed[GCM_NONCE_BYTES:],
                    mechanism=Mechanism.AES_GCM,
                    mechanism_param=GCMParams(sealed[:GCM_NONCE_BYTES], aad, GCM_TAG_BITS),
                )
            )
        except PKCS11Error as e:
            raise KeyBlobError("sealed value does not open (tampered or misplaced)") from e
