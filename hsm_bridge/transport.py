"""Transport keys: how the device's password key `K_pw` reaches the HSM.

Owns the wire format of a transport message, the one-time transport keys and
the unwrap of `K_pw` (`HsmTransportKeys._password_key`, used by `custody`).

Per challenge the server creates one EC P-256 key pair in the HSM
(`create_transport_key`): the private half is a sensitive token object
labelled `transport:<transport key id>` (a token object so that any process
can answer the challenge), the public half is returned as a DER
SubjectPublicKeyInfo and not kept.

What the device sends back (`TransportMessage`):

* `transport_key_id`: the challenge's key id, as text;
* `device_point`: the device's ephemeral P-256 public key, an uncompressed
  SEC 1 point (`04 || X || Y`, 65 bytes), checked to be on the curve;
* `wrapped_key`: `AES-KW_KEK(K_pw)`, RFC 3394 key wrap of the 32-byte
  `K_pw` (40 bytes).

Both sides derive `KEK = AES-256-ECB_Z(ctx)`, where `Z` is the 32-byte ECDH
shared secret (the x coordinate) used as an AES-256 key, and
`ctx = SHA-256("cloudsign/transport/v1" || 0x00 || transport key id (UTF-8)
|| 0x00 || device point)` (`transport_context`); the two 16-byte blocks of
`ctx` encrypt to the 32-byte KEK. SoftHSM2 offers only `CKD_NULL` for
`CKM_ECDH1_DERIVE`, so Z is not used as the wrapping key directly: the HSM
runs this step as `CKM_AES_ECB_ENCRYPT_DATA`, which binds the KEK to this
challenge and this device key. The HSM unwraps `K_pw` straight into a
sensitive, non-extractable session object; Z and KEK are session objects
destroyed right after.

A transport key is consumed by its first use, whatever the outcome, so a
captured message cannot be replayed and a wrong one cannot be retried.
`device_client.device` is the device side of the same format.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

from pkcs11 import KDF, Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11.exceptions import MultipleObjectsReturned, NoSuchKey, PKCS11Error
from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters

from hsm_bridge.errors import InvalidTransportMessageError, TransportKeyError
from hsm_bridge.session import SECRET_SENSITIVE, HsmSession

TRANSPORT_LABEL_PREFIX: Final = "transport:"
TRANSPORT_CONTEXT_LABEL: Final = b"cloudsign/transport/v1"
P256_OID: Final = "1.2.840.10045.3.1.7"
UNCOMPRESSED_P256_POINT_BYTES: Final = 65
WRAPPED_PASSWORD_KEY_BYTES: Final = 40  # RFC 3394 wrap of a 32-byte key


def transport_context(transport_key_id: str, device_point: bytes) -> bytes:
    """The 32 bytes the KEK is derived from; the device computes the same."""
    return hashlib.sha256(
        TRANSPORT_CONTEXT_LABEL + b"\x00" + transport_key_id.encode() + b"\x00" + device_point
    ).digest()


@dataclass(frozen=True)
class TransportMessage:
    """What the device sends: its ephemeral public point and K_pw wrapped for
    the one-time HSM key `transport_key_id`."""

    transport_key_id: str
    device_point: bytes = field(repr=False)
    wrapped_key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.device_point) != UNCOMPRESSED_P256_POINT_BYTES or self.device_point[0] != 4:
            raise InvalidTransportMessageError(
                "device public key must be an uncompressed P-256 point (65 bytes)"
            )
        if len(self.wrapped_key) != WRAPPED_PASSWORD_KEY_BYTES:
            raise InvalidTransportMessageError("wrapped password key must be 40 bytes (AES-KW)")
        # Reject points off the curve here rather than inside the HSM.
        from cryptography.hazmat.primitives.asymmetric import ec

        try:
            ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), self.device_point)
        except ValueError as e:
            raise InvalidTransportMessageError("device public key is not a P-256 point") from e


class HsmTransportKeys(HsmSession):
    """One-time transport keys and the unwrap of K_pw they carry."""

    async def create_transport_key(self, transport_key_id: str) -> bytes:
        """Create the one-time ECDH key for a challenge; returns its SPKI (DER)."""
        return await self._call(self._create_transport_key, transport_key_id)

    def _create_transport_key(self, transport_key_id: str) -> bytes:
        s = self._session()
        params = s.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters(P256_OID)}, local=True
        )
        with self._token_write():
            pub, _priv = params.generate_keypair(
                store=True,
                label=TRANSPORT_LABEL_PREFIX + transport_key_id,
                id=transport_key_id.encode(),
                capabilities=MechanismFlag.DERIVE,
                public_template={Attribute.TOKEN: False},
                private_template={
                    **SECRET_SENSITIVE,
                    Attribute.DERIVE: True,
                    Attribute.SIGN: False,
                },
            )
        try:
            return bytes(encode_ec_public_key(pub))
        finally:
            pub.destroy()

    async def destroy_transport_key(self, transport_key_id: str) -> bool:
        """Destroy an unused transport key (expiry sweep). True if one existed."""
        return await self._call(self._destroy_transport_key, transport_key_id)

    def _destroy_transport_key(self, transport_key_id: str) -> bool:
        with self._token_write():
            objects = list(
                self._session().get_objects(
                    {Attribute.LABEL: TRANSPORT_LABEL_PREFIX + transport_key_id}
                )
            )
            for obj in objects:
                obj.destroy()
        return bool(objects)

    @contextmanager
    def _password_key(self, message: TransportMessage) -> Iterator[Any]:
        """Unwrap K_pw into a session object; the transport key is consumed."""
        s = self._session()
        label = TRANSPORT_LABEL_PREFIX + message.transport_key_id
        try:
            priv = s.get_key(object_class=ObjectClass.PRIVATE_KEY, label=label)
        except (NoSuchKey, MultipleObjectsReturned) as e:
            raise TransportKeyError("transport key unknown, already used or expired") from e
        temporaries: list[Any] = []
        try:
            z = priv.derive_key(
                KeyType.AES,
                256,
                capabilities=MechanismFlag.DERIVE,
                mechanism_param=(KDF.NULL, None, message.device_point),
                template=SECRET_SENSITIVE,
            )
            temporaries.append(z)
            kek = z.derive_key(
                KeyType.AES,
                256,
                mechanism=Mechanism.AES_ECB_ENCRYPT_DATA,
                mechanism_param=transport_context(message.transport_key_id, message.device_point),
                capabilities=MechanismFlag.UNWRAP,
                template=SECRET_SENSITIVE,
            )
            temporaries.append(kek)
            kpw = kek.unwrap_key(
                ObjectClass.SECRET_KEY,
                KeyType.AES,
                message.wrapped_key,
                mechanism=Mechanism.AES_KEY_WRAP,
                capabilities=MechanismFlag.ENCRYPT | MechanismFlag.DECRYPT,
                template=SECRET_SENSITIVE,
            )
        except PKCS11Error as e:
            raise TransportKeyError("the wrapped password key does not unwrap") from e
        finally:
            for obj in temporaries:
                obj.destroy()
            # One-time: the transport key goes whatever the outcome, so a
            # captured message cannot be replayed and a wrong one cannot be retried.
            with self._token_write():
                priv.destroy()
        try:
            yield kpw
        finally:
            kpw.destroy()
