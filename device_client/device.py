"""What the citizen's device does with the key password, in Python.

The same steps run in the browser (WebCrypto + an Argon2 WebAssembly build):

1. `K_pw = Argon2id(password, salt)` with the parameters the server publishes
   for this owner. The password never leaves the device.
2. ECDH between a fresh device key and the server's one-time HSM transport
   key; `KEK = AES-256-ECB_Z(ctx)` with `ctx` from
   `hsm_bridge.transport_context` (the HSM derives the same KEK).
3. `AES-KW(KEK, K_pw)` (RFC 3394) goes to the server with the device's public
   point. Only the HSM can unwrap it, and only once.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Final

from argon2.low_level import Type, hash_secret_raw
from cryptography.hazmat.primitives import keywrap, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

TRANSPORT_CONTEXT_LABEL: Final = b"cloudsign/transport/v1"
KPW_BYTES: Final = 32
#: Marks a CSC PIN that carries a wrapped K_pw rather than a password.
PIN_PREFIX: Final = "CSPW1"


@dataclass(frozen=True)
class Argon2Params:
    salt: bytes
    time_cost: int
    memory_kib: int
    parallelism: int

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Argon2Params:
        return cls(
            salt=base64.b64decode(str(data["salt"])),
            time_cost=int(str(data["time_cost"])),
            memory_kib=int(str(data["memory_kib"])),
            parallelism=int(str(data["parallelism"])),
        )


@dataclass(frozen=True)
class WrappedPasswordKey:
    transport_key_id: str
    device_point: bytes
    wrapped_key: bytes = field(repr=False)

    def to_pin(self) -> str:
        """The CSC `PIN` form: CSPW1.<transport key id>.<b64url point>.<b64url wrap>."""
        enc = base64.urlsafe_b64encode
        return ".".join(
            (
                PIN_PREFIX,
                self.transport_key_id,
                enc(self.device_point).decode().rstrip("="),
                enc(self.wrapped_key).decode().rstrip("="),
            )
        )

    def to_json(self) -> dict[str, str]:
        return {
            "transport_key_id": self.transport_key_id,
            "device_public_key": base64.b64encode(self.device_point).decode(),
            "wrapped_key": base64.b64encode(self.wrapped_key).decode(),
        }


def derive_password_key(password: str, params: Argon2Params) -> bytes:
    """K_pw: Argon2id over the password, with the owner's published parameters."""
    return hash_secret_raw(
        password.encode(),
        params.salt,
        time_cost=params.time_cost,
        memory_cost=params.memory_kib,
        parallelism=params.parallelism,
        hash_len=KPW_BYTES,
        type=Type.ID,
    )


def transport_context(transport_key_id: str, device_point: bytes) -> bytes:
    # Same bytes as hsm_bridge.transport_context; a device does not import the HSM code.
    return hashlib.sha256(
        TRANSPORT_CONTEXT_LABEL + b"\x00" + transport_key_id.encode() + b"\x00" + device_point
    ).digest()


def wrap_for_transport(
    kpw: bytes, transport_key_id: str, transport_spki: bytes
) -> WrappedPasswordKey:
    server_key = serialization.load_der_public_key(transport_spki)
    if (
        not isinstance(server_key, ec.EllipticCurvePublicKey)
        or server_key.curve.name != "secp256r1"
    ):
        raise ValueError("the transport key is not a P-256 key")
    device_key = ec.generate_private_key(ec.SECP256R1())
    z = device_key.exchange(ec.ECDH(), server_key)
    point = device_key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    enc = Cipher(algorithms.AES(z), modes.ECB()).encryptor()  # noqa: S305 - a PRF over two fixed blocks, not a cipher mode for data
    kek = enc.update(transport_context(transport_key_id, point)) + enc.finalize()
    return WrappedPasswordKey(transport_key_id, point, keywrap.aes_key_wrap(kek, kpw))
