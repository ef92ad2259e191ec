"""Owner keys: the citizens' signing keys, which exist in the clear only inside
the HSM and only while they sign.

Owns `CreatedKey`, `UnlockedKey`, the owner-key blob format, the templates of
owner private keys, and `HsmOwnerKeys` (create, unlock, sign).

* An AES-256 **master wrapping key** (`cloudsign-master`) carries
  `CKA_TRUSTED`. Owner private keys are generated with
  `CKA_WRAP_WITH_TRUSTED`, so only a trusted key can ever wrap them. The
  master key is itself wrappable only by a trusted key (the archive key of
  a backup, `hsm_bridge.backup`), and its `CKA_UNWRAP_TEMPLATE` makes
  whatever it unwraps session-only, sensitive and not extractable
  (`hsm_bridge.templates`).
  SoftHSM2 lets only the SO set `CKA_TRUSTED`, and the SO sees public objects
  only, which SoftHSM2 stores *unencrypted* on disk. So provisioning creates
  the trusted key as a public *session* object (memory only) in an SO session,
  switches the login to the user, and copies it into a private token object
  (`provision.py`). The key value never touches the disk in the clear.
* **`K_pw`**, the key derived from the owner's password on the device,
  reaches the HSM through a one-time transport key (`transport`).
* **Owner key blob**: `CSK1 || n3 || GCM_seal(n2 || GCM_Kpw(WRAP_master(priv)))`,
  where `WRAP_master` is `CKM_AES_KEY_WRAP_PAD` (RFC 5649) under the master
  key, `GCM_Kpw` is AES-GCM under `K_pw` with nonce `n2`, and `GCM_seal` is
  AES-GCM under the sealing key `cloudsign-seal-credential` with nonce `n3`
  (12-byte nonces, 16-byte tags appended to the ciphertext).
  The middle layer is the architecture's password layer; its GCM tag is the
  "password hash" kept by the HSM: a wrong `K_pw` fails inside the HSM.
  The outer layer, under a non-extractable HSM sealing key, is added so that
  a stolen database alone gives no offline oracle to guess passwords against.
  Both GCM layers take `b"cloudsign/owner-key/v1\\x00" || credential id`
  as associated data, so a blob cannot be moved to another credential.
* **Use**: the two GCM layers are opened in the HSM, the inner layer is
  unwrapped by the master key into a session-only, non-extractable key, used,
  and destroyed in a `finally`.
* **Master key rotation** happens at a restore into a new token
  (`cloudsign backup restore --new-master`): only the SO may make a trusted
  key, and the SO PIN exists only in the child that initialises a token.
  The archive's master key comes back as `cloudsign-master-retired-<id>`
  (not trusted, unwrap only, `RETIRED_MASTER_UNWRAP_TEMPLATE`) beside a new
  `cloudsign-master`. An owner blob still holds the key wrapped under the
  old master, inside the password layer, so it can be moved only when the
  owner opens it: `unlock_owner_key` then unwraps the key under the retired
  master into a session object that is sensitive and wrappable only by a
  trusted key, wraps it under the new master, seals both layers again under
  the same `K_pw`, and returns the new blob in `UnlockedKey.rewrapped_blob`
  for the caller to store. An owner who has not signed since the rotation
  keeps the old blob and still signs (and is moved then); a retired master
  stays on the token, and in its archives, until no blob needs it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11.exceptions import PKCS11Error
from pkcs11.mechanisms import GCMParams

from hsm_bridge.algorithms import HashAlgorithm, KeyAlgorithm, SignatureScheme
from hsm_bridge.errors import (
    KeyBlobError,
    UnsupportedAlgorithmError,
    WrongPasswordError,
)
from hsm_bridge.keypairs import check_scheme, generate_pair, sign_digest_with, spki_of
from hsm_bridge.sealing import GCM_NONCE_BYTES, GCM_TAG_BITS, HsmSealing
from hsm_bridge.session import MASTER_KEY_LABEL, RETIRED_MASTER_PREFIX, SECRET_SENSITIVE
from hsm_bridge.transport import HsmTransportKeys, TransportMessage

__all__ = [
    "BLOB_MAGIC",
    "MASTER_KEY_LABEL",
    "OWNER_KEY_TEMPLATE",
    "SIGNING_KEY_TEMPLATE",
    "CreatedKey",
    "HsmOwnerKeys",
    "UnlockedKey",
]

BLOB_MAGIC: Final = b"CSK1"


@dataclass(frozen=True)
class CreatedKey:
    """A new owner key: its public half and the only stored form of the private half."""

    algorithm: KeyAlgorithm
    public_key_info: bytes  # DER SubjectPublicKeyInfo
    blob: bytes = field(repr=False)


@dataclass(frozen=True)
class UnlockedKey:
    """The owner key after the password layer was opened in the HSM: still
    wrapped under the master key, usable only inside this HSM.

    `rewrapped_blob`: the owner's new blob when this opening moved the key
    from a retired master to the current one (a rotation); the caller
    stores it in place of the old one."""

    credential_id: str
    algorithm: KeyAlgorithm
    wrapped: bytes = field(repr=False)
    rewrapped_blob: bytes | None = field(default=None, repr=False)


#: A new owner private key: extractable only so the trusted master key can
#: wrap it once, and by no other key (`CKA_WRAP_WITH_TRUSTED`).
OWNER_KEY_TEMPLATE: Final = {
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: True,
    Attribute.WRAP_WITH_TRUSTED: True,
    Attribute.PRIVATE: True,
}

#: The owner key while it signs: session-only, never extractable again.
SIGNING_KEY_TEMPLATE: Final = {
    **SECRET_SENSITIVE,
    Attribute.SIGN: True,
    # python-pkcs11 sets every capability flag; these are not valid on a
    # private key object, so leave them out.
    Attribute.ENCRYPT: pkcs11.DEFAULT,
    Attribute.VERIFY: pkcs11.DEFAULT,
    Attribute.WRAP: pkcs11.DEFAULT,
}


#: An owner key on its way from a retired master to the current one:
#: session-only, never readable, wrappable by a trusted key only.
MOVING_KEY_TEMPLATE: Final = {
    **SIGNING_KEY_TEMPLATE,
    Attribute.EXTRACTABLE: True,
    Attribute.WRAP_WITH_TRUSTED: True,
}


def _seal_layers(kpw: Any, sealing: Any, inner: bytes, aad: bytes) -> bytes:
    """`CSK1 || n3 || GCM_seal(n2 || GCM_Kpw(inner))` (see the module doc)."""
    n2 = os.urandom(GCM_NONCE_BYTES)
    middle = n2 + bytes(
        kpw.encrypt(
            inner, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(n2, aad, GCM_TAG_BITS)
        )
    )
    n3 = os.urandom(GCM_NONCE_BYTES)
    outer = sealing.encrypt(
        middle, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(n3, aad, GCM_TAG_BITS)
    )
    return BLOB_MAGIC + n3 + bytes(outer)


def _blob_aad(credential_id: str) -> bytes:
    return b"cloudsign/owner-key/v1\x00" + credential_id.encode()


class HsmOwnerKeys(HsmTransportKeys, HsmSealing):
    """Create, unlock and use owner keys; `K_pw` comes from a transport key and
    the outer blob layer from the `credential` sealing key."""

    async def create_owner_key(
        self, message: TransportMessage, algorithm: KeyAlgorithm, credential_id: str
    ) -> CreatedKey:
        return await self._call(self._create_owner_key, message, algorithm, credential_id)

    def _create_owner_key(
        self, message: TransportMessage, algorithm: KeyAlgorithm, credential_id: str
    ) -> CreatedKey:
        s = self._session()
        master = self._cached_key(ObjectClass.SECRET_KEY, MASTER_KEY_LABEL)
        sealing = self._sealing_key("credential")
        aad = _blob_aad(credential_id)
        with self._password_key(message) as kpw:
            pub, priv = generate_pair(
                s,
                algorithm,
                store=False,
                private_template=OWNER_KEY_TEMPLATE,
            )
            try:
                inner = master.wrap_key(priv, mechanism=Mechanism.AES_KEY_WRAP_PAD)
                spki = spki_of(pub, algorithm)
            finally:
                priv.destroy()
                pub.destroy()
            blob = _seal_layers(kpw, sealing, inner, aad)
        return CreatedKey(algorithm, spki, blob)

    async def rewrap_owner_key(self, key: UnlockedKey, message: TransportMessage) -> bytes:
        """A new blob of the same owner key under a new password: the key
        opened by the current password (`key`, still wrapped under the master
        key) is sealed again under the K_pw of `message`. The private key
        itself is never unwrapped for this."""
        return await self._call(self._rewrap_owner_key, key, message)

    def _rewrap_owner_key(self, key: UnlockedKey, message: TransportMessage) -> bytes:
        aad = _blob_aad(key.credential_id)
        sealing = self._sealing_key("credential")
        with self._password_key(message) as kpw:
            return _seal_layers(kpw, sealing, key.wrapped, aad)

    async def unlock_owner_key(
        self, message: TransportMessage, credential_id: str, algorithm: KeyAlgorithm, blob: bytes
    ) -> UnlockedKey:
        """Open the sealing and password layers; a wrong password fails here."""
        return await self._call(self._unlock_owner_key, message, credential_id, algorithm, blob)

    def _unlock_owner_key(
        self, message: TransportMessage, credential_id: str, algorithm: KeyAlgorithm, blob: bytes
    ) -> UnlockedKey:
        if not blob.startswith(BLOB_MAGIC) or len(blob) < len(BLOB_MAGIC) + 2 * GCM_NONCE_BYTES:
            raise KeyBlobError("key blob format not recognised")
        aad = _blob_aad(credential_id)
        n3 = blob[len(BLOB_MAGIC) : len(BLOB_MAGIC) + GCM_NONCE_BYTES]
        outer = blob[len(BLOB_MAGIC) + GCM_NONCE_BYTES :]
        sealing = self._sealing_key("credential")
        try:
            middle = sealing.decrypt(
                outer, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(n3, aad, GCM_TAG_BITS)
            )
        except PKCS11Error as e:
            raise KeyBlobError("key blob does not belong to this credential") from e
        n2, sealed = middle[:GCM_NONCE_BYTES], middle[GCM_NONCE_BYTES:]
        with self._password_key(message) as kpw:
            try:
                inner = bytes(
                    kpw.decrypt(
                        sealed,
                        mechanism=Mechanism.AES_GCM,
                        mechanism_param=GCMParams(n2, aad, GCM_TAG_BITS),
                    )
                )
            except PKCS11Error as e:
                raise WrongPasswordError("the key password is wrong") from e
            moved = self._to_current_master(inner, algorithm)
            if moved is None:
                return UnlockedKey(credential_id, algorithm, inner)
            blob = _seal_layers(kpw, sealing, moved, aad)
        return UnlockedKey(credential_id, algorithm, moved, rewrapped_blob=blob)

    def _retired_masters(self) -> list[Any]:
        """The retired master keys of the token (after a rotation), looked
        up once per bridge: a rotation happens at a restore, with the
        service stopped."""
        found: list[Any] | None = self.__dict__.get("_retired")
        if found is None:
            found = [
                k
                for k in self._session().get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY})
                if str(k[Attribute.LABEL]).startswith(RETIRED_MASTER_PREFIX)
            ]
            self.__dict__["_retired"] = found
        return found

    def _to_current_master(self, inner: bytes, algorithm: KeyAlgorithm) -> bytes | None:
        """None if `inner` is wrapped under the current master key; else the
        key moved there from the retired master that wrapped it, without it
        ever being readable (`RETIRED_MASTER_UNWRAP_TEMPLATE`)."""
        retired = self._retired_masters()
        if not retired:
            return None
        master = self._cached_key(ObjectClass.SECRET_KEY, MASTER_KEY_LABEL)
        key_type = KeyType.EC if algorithm.is_ec else KeyType.RSA
        try:
            master.unwrap_key(
                ObjectClass.PRIVATE_KEY,
                key_type,
                inner,
                mechanism=Mechanism.AES_KEY_WRAP_PAD,
                capabilities=MechanismFlag.SIGN,
                template=SIGNING_KEY_TEMPLATE,
            ).destroy()
            return None
        except PKCS11Error:
            pass
        for old in retired:
            try:
                priv = old.unwrap_key(
                    ObjectClass.PRIVATE_KEY,
                    key_type,
                    inner,
                    mechanism=Mechanism.AES_KEY_WRAP_PAD,
                    capabilities=MechanismFlag.SIGN,
                    template=MOVING_KEY_TEMPLATE,
                )
            except PKCS11Error:
                continue
            try:
                return bytes(master.wrap_key(priv, mechanism=Mechanism.AES_KEY_WRAP_PAD))
            finally:
                priv.destroy()
        raise KeyBlobError("the owner key unwraps under no master key of this token")

    async def sign_with_unlocked(
        self,
        key: UnlockedKey,
        digests: Sequence[bytes],
        hash_alg: HashAlgorithm,
        scheme: SignatureScheme,
    ) -> list[bytes]:
        """Sign each digest with the owner key; the key lives in the HSM only
        for the duration of this call."""
        return await self._call(self._sign_with_unlocked, key, list(digests), hash_alg, scheme)

    def _sign_with_unlocked(
        self,
        key: UnlockedKey,
        digests: list[bytes],
        hash_alg: HashAlgorithm,
        scheme: SignatureScheme,
    ) -> list[bytes]:
        check_scheme(key.algorithm, scheme)
        for d in digests:
            if len(d) != hash_alg.digest_size:
                raise UnsupportedAlgorithmError(
                    f"a {hash_alg.name} digest is {hash_alg.digest_size} bytes, got {len(d)}"
                )
        master = self._cached_key(ObjectClass.SECRET_KEY, MASTER_KEY_LABEL)
        key_type = KeyType.EC if key.algorithm.is_ec else KeyType.RSA
        try:
            priv = master.unwrap_key(
                ObjectClass.PRIVATE_KEY,
                key_type,
                key.wrapped,
                mechanism=Mechanism.AES_KEY_WRAP_PAD,
                capabilities=MechanismFlag.SIGN,
                template=SIGNING_KEY_TEMPLATE,
            )
        except PKCS11Error as e:
            raise KeyBlobError("the owner key does not unwrap under the master key") from e
        try:
            return [sign_digest_with(priv, d, hash_alg, scheme) for d in digests]
        finally:
            priv.destroy()
