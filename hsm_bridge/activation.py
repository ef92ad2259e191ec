"""The owner key between authorisation and signature: bound to one SAD,
inside the HSM, reachable from every process, gone when the SAD is.

An authorisation opens the owner's password layer (`custody`) and leaves
the key wrapped under the master key (`UnlockedKey`). Keeping that in a
process's memory for the SAD's life would let a memory read plus the PIN
sign with no factor at all, and would tie the SAD to that process. Instead,
in the same request:

* a fresh AES-256 **SAD key** is generated as a private, sensitive,
  non-extractable *token* object (label `cloudsign-sad`, `CKA_ID` =
  `<sad id>|<expiry, Unix seconds>`) that can do nothing but derive; being
  a token object, every process on the token (and every HSM of a cluster)
  finds it;
* a session key `K` is derived from it inside the HSM with
  `CKM_AES_ECB_ENCRYPT_DATA` over `SHA-256("cloudsign/sad/v1" 0 sad-id 0
  SAD)`, where SAD is the bearer token the client holds and the service
  keeps only as a different hash;
* the master-wrapped key is sealed with AES-GCM under `K` (associated data:
  the domain, the SAD id and the credential id), `K` is destroyed, and the
  sealed form (`SadKey.sealed`) is stored with the SAD's record.

Each signature under the SAD derives `K` again from the SAD key and the
client's SAD, opens the seal, unwraps the owner key under the master key
into a session object, signs and destroys it, all in one HSM call. So:

* between requests no process holds the key in any form; the database holds
  it sealed under a key that needs both the HSM object and the client's SAD:
  the database plus the PIN signs nothing, the SAD without the HSM nothing;
* the SAD key is destroyed when the SAD is used up, revoked or extended
  (`destroy_sad_key`), and any left behind by a killed process is swept once
  the expiry in its `CKA_ID` passes (`sweep_sad_keys`): after that the
  sealed form in a database backup is noise.

`K` never exists outside the HSM; a PIN holder cannot re-derive it without
the SAD, and cannot use the SAD key for anything but derivation.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11.exceptions import PKCS11Error
from pkcs11.mechanisms import GCMParams

from hsm_bridge.algorithms import HashAlgorithm, KeyAlgorithm, SignatureScheme
from hsm_bridge.custody import HsmOwnerKeys, UnlockedKey
from hsm_bridge.errors import KeyBlobError
from hsm_bridge.sealing import GCM_NONCE_BYTES, GCM_TAG_BITS
from hsm_bridge.session import SECRET_SENSITIVE

__all__ = ["SAD_KEY_LABEL", "HsmSadKeys", "SadKey"]

SAD_KEY_LABEL: Final = "cloudsign-sad"
_DOMAIN: Final = b"cloudsign/sad/v1"


@dataclass(frozen=True)
class SadKey:
    """The owner key as a SAD's record keeps it: sealed under the SAD key."""

    sad_id: str
    credential_id: str
    algorithm: KeyAlgorithm
    expires_at: int  # Unix seconds, as in the SAD key's CKA_ID
    sealed: bytes = field(repr=False)


def _key_id(sad_id: str, expires_at: int) -> bytes:
    return f"{sad_id}|{expires_at}".encode()


def _derivation_data(sad_id: str, token: bytes) -> bytes:
    return hashlib.sha256(_DOMAIN + b"\x00" + sad_id.encode() + b"\x00" + token).digest()


def _aad(sad_id: str, credential_id: str) -> bytes:
    return _DOMAIN + b"\x00" + sad_id.encode() + b"\x00" + credential_id.encode()


def unix(moment: datetime) -> int:
    """Whole seconds, rounded up: the key never dies before its record."""
    return math.ceil(moment.timestamp())


class HsmSadKeys(HsmOwnerKeys):
    """Bind an unlocked owner key to a SAD, sign under the SAD, destroy."""

    async def bind_to_sad(
        self, key: UnlockedKey, sad_id: str, token: bytes, expires_at: datetime
    ) -> SadKey:
        """Seal `key` under a new SAD key for `sad_id` and the client's `token`."""
        return await self._call(self._bind_to_sad, key, sad_id, token, unix(expires_at))

    def _bind_to_sad(self, key: UnlockedKey, sad_id: str, token: bytes, expires_at: int) -> SadKey:
        with self._token_write():
            base = self._session().generate_key(
                KeyType.AES,
                256,
                store=True,
                label=SAD_KEY_LABEL,
                id=_key_id(sad_id, expires_at),
                capabilities=MechanismFlag.DERIVE,
                template={**SECRET_SENSITIVE, Attribute.DERIVE: True},
            )
        try:
            with self._sad_session_key(base, sad_id, token) as k:
                nonce = os.urandom(GCM_NONCE_BYTES)
                sealed = nonce + bytes(
                    k.encrypt(
                        key.wrapped,
                        mechanism=Mechanism.AES_GCM,
                        mechanism_param=GCMParams(
                            nonce, _aad(sad_id, key.credential_id), GCM_TAG_BITS
                        ),
                    )
                )
        except BaseException:
            with self._token_write():
                base.destroy()
            raise
        return SadKey(sad_id, key.credential_id, key.algorithm, expires_at, sealed)

    def _sad_base(self, sad_id: str, expires_at: int) -> Any:
        found = list(
            self._session().get_objects(
                {
                    Attribute.CLASS: ObjectClass.SECRET_KEY,
                    Attribute.LABEL: SAD_KEY_LABEL,
                    Attribute.ID: _key_id(sad_id, expires_at),
                }
            )
        )
        if len(found) != 1:
            raise KeyBlobError("the SAD's key is gone (used up, revoked or expired)")
        return found[0]

    @contextmanager
    def _sad_session_key(self, base: Any, sad_id: str, token: bytes) -> Iterator[Any]:
        """`K`, a session object for the length of the block."""
        k = base.derive_key(
            KeyType.AES,
            256,
            mechanism=Mechanism.AES_ECB_ENCRYPT_DATA,
            mechanism_param=_derivation_data(sad_id, token),
            capabilities=MechanismFlag.ENCRYPT | MechanismFlag.DECRYPT,
            template=SECRET_SENSITIVE,
        )
        try:
            yield k
        finally:
            k.destroy()

    def _open_sad(self, sad: SadKey, token: bytes) -> UnlockedKey:
        base = self._sad_base(sad.sad_id, sad.expires_at)
        nonce, sealed = sad.sealed[:GCM_NONCE_BYTES], sad.sealed[GCM_NONCE_BYTES:]
        with self._sad_session_key(base, sad.sad_id, token) as k:
            try:
                wrapped = k.decrypt(
                    sealed,
                    mechanism=Mechanism.AES_GCM,
                    mechanism_param=GCMParams(
                        nonce, _aad(sad.sad_id, sad.credential_id), GCM_TAG_BITS
                    ),
                )
            except PKCS11Error as e:
                raise KeyBlobError("the sealed key does not open with this SAD") from e
        return UnlockedKey(sad.credential_id, sad.algorithm, bytes(wrapped))

    async def sign_with_sad(
        self,
        sad: SadKey,
        token: bytes,
        digests: Sequence[bytes],
        hash_alg: HashAlgorithm,
        scheme: SignatureScheme,
    ) -> list[bytes]:
        """Open the seal with the client's SAD and sign each digest, in one call."""
        return await self._call(self._sign_with_sad, sad, token, list(digests), hash_alg, scheme)

    def _sign_with_sad(
        self,
        sad: SadKey,
        token: bytes,
        digests: list[bytes],
        hash_alg: HashAlgorithm,
        scheme: SignatureScheme,
    ) -> list[bytes]:
        return self._sign_with_unlocked(self._open_sad(sad, token), digests, hash_alg, scheme)

    async def rebind_sad(
        self, sad: SadKey, token: bytes, new_token: bytes, expires_at: datetime
    ) -> SadKey:
        """The same key under a new SAD key, for a new token and expiry (CSC
        extendTransaction); the caller destroys the old SAD key once the
        record names the new one."""
        return await self._call(self._rebind_sad, sad, token, new_token, unix(expires_at))

    def _rebind_sad(self, sad: SadKey, token: bytes, new_token: bytes, expires_at: int) -> SadKey:
        if expires_at == sad.expires_at:
            expires_at += 1  # a distinct CKA_ID, so the old key can go
        return self._bind_to_sad(self._open_sad(sad, token), sad.sad_id, new_token, expires_at)

    async def destroy_sad_key(self, sad_id: str, expires_at: int) -> bool:
        return await self._call(self._destroy_sad_key, sad_id, expires_at)

    def _destroy_sad_key(self, sad_id: str, expires_at: int) -> bool:
        with self._token_write():
            found = list(
                self._session().get_objects(
                    {Attribute.LABEL: SAD_KEY_LABEL, Attribute.ID: _key_id(sad_id, expires_at)}
                )
            )
            for obj in found:
                obj.destroy()
        return bool(found)

    async def sweep_sad_keys(self, now: datetime) -> int:
        """Destroy every SAD key whose expiry has passed; returns how many."""
        return await self._call(self._sweep_sad_keys, unix(now))

    def _sweep_sad_keys(self, now: int) -> int:
        gone = 0
        with self._token_write():
            for obj in list(self._session().get_objects({Attribute.LABEL: SAD_KEY_LABEL})):
                raw = bytes(obj[Attribute.ID])
                _, _, expiry = raw.rpartition(b"|")
                if not expiry.isdigit() or int(expiry) <= now:
                    obj.destroy()
                    gone += 1
        return gone
