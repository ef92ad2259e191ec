"""Long-lived service keys: the CA, OCSP, TSA, audit-log and anchoring keys.

Persistent, non-extractable key pairs on the token, found by label and used
in place; unlike owner keys (`custody`) they are never wrapped or stored
outside the HSM.
"""

from __future__ import annotations

from pkcs11 import Attribute, Mechanism, ObjectClass

from hsm_bridge.algorithms import HashAlgorithm, KeyAlgorithm, SignatureScheme
from hsm_bridge.errors import HsmConfigurationError
from hsm_bridge.keypairs import check_scheme, generate_pair, sign_digest_with, spki_of
from hsm_bridge.session import SECRET_SENSITIVE, HsmSession


class HsmServiceKeys(HsmSession):
    """Generation, public halves and signatures of the service's own keys."""

    async def generate_signing_key(self, label: str, algorithm: KeyAlgorithm) -> bytes:
        """A persistent, non-extractable key pair; returns its SPKI (DER)."""
        return await self._call(self._generate_signing_key, label, algorithm)

    def _generate_signing_key(self, label: str, algorithm: KeyAlgorithm) -> bytes:
        s = self._session()
        if list(s.get_objects({Attribute.LABEL: label, Attribute.CLASS: ObjectClass.PRIVATE_KEY})):
            raise HsmConfigurationError(f"a key labelled {label!r} already exists")
        pub, _priv = generate_pair(
            s,
            algorithm,
            store=True,
            label=label,
            private_template={**SECRET_SENSITIVE},
        )
        return spki_of(pub, algorithm)

    async def public_key_info(self, label: str, algorithm: KeyAlgorithm) -> bytes:
        return await self._call(self._public_key_info_of, label, algorithm)

    def _public_key_info_of(self, label: str, algorithm: KeyAlgorithm) -> bytes:
        return spki_of(self._cached_key(ObjectClass.PUBLIC_KEY, label), algorithm)

    async def sign_digest(
        self,
        label: str,
        algorithm: KeyAlgorithm,
        digest: bytes,
        hash_alg: HashAlgorithm,
        scheme: SignatureScheme,
    ) -> bytes:
        return await self._call(self._sign_digest_named, label, algorithm, digest, hash_alg, scheme)

    def _sign_digest_named(
        self,
        label: str,
        algorithm: KeyAlgorithm,
        digest: bytes,
        hash_alg: HashAlgorithm,
        scheme: SignatureScheme,
    ) -> bytes:
        check_scheme(algorithm, scheme)
        return sign_digest_with(
            self._cached_key(ObjectClass.PRIVATE_KEY, label), digest, hash_alg, scheme
        )

    async def sign_message(self, label: str, message: bytes) -> bytes:
        """Ed25519 (PureEdDSA) over the message itself."""
        return await self._call(self._sign_message, label, message)

    def _sign_message(self, label: str, message: bytes) -> bytes:
        key = self._cached_key(ObjectClass.PRIVATE_KEY, label)
        return bytes(key.sign(message, mechanism=Mechanism.EDDSA))

    async def has_key(self, label: str) -> bool:
        return await self._call(self._has_key, label)

    def _has_key(self, label: str) -> bool:
        return bool(list(self._session().get_objects({Attribute.LABEL: label})))
