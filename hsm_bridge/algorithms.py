"""Key algorithms and signature schemes the bridge supports, and the small
encodings around them (DigestInfo for PKCS#1 v1.5, DER for ECDSA)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from asn1crypto import algos
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from hsm_bridge.errors import UnsupportedAlgorithmError


class KeyAlgorithm(enum.StrEnum):
    """Owner and CA key types. Values are the names used in the API and config."""

    EC_P256 = "ec-p256"
    EC_P384 = "ec-p384"
    RSA_2048 = "rsa-2048"
    RSA_3072 = "rsa-3072"
    #: Ethereum accounts (the anchoring key).
    EC_SECP256K1 = "ec-secp256k1"
    #: Signed-note checkpoints of the audit log.
    ED25519 = "ed25519"

    @property
    def is_ec(self) -> bool:
        """Weierstrass curves signed with CKM_ECDSA."""
        return self in _CURVE_OIDS and self is not KeyAlgorithm.ED25519

    @property
    def is_rsa(self) -> bool:
        return self in _RSA_BITS

    @property
    def curve_oid(self) -> str:
        return _CURVE_OIDS[self]

    @property
    def rsa_bits(self) -> int:
        return _RSA_BITS[self]

    @classmethod
    def parse(cls, value: object) -> KeyAlgorithm:
        try:
            return cls(value if isinstance(value, str) else "")
        except ValueError as e:
            shown = ascii(value)[:40] if isinstance(value, str) else "a non-string"
            raise UnsupportedAlgorithmError(f"unsupported key algorithm {shown}") from e


_CURVE_OIDS: Final = {
    KeyAlgorithm.EC_P256: "1.2.840.10045.3.1.7",
    KeyAlgorithm.EC_P384: "1.3.132.0.34",
    KeyAlgorithm.EC_SECP256K1: "1.3.132.0.10",
    KeyAlgorithm.ED25519: "1.3.101.112",
}
_RSA_BITS: Final = {KeyAlgorithm.RSA_2048: 2048, KeyAlgorithm.RSA_3072: 3072}

#: Algorithms a citizen may choose for a cloud key.
OWNER_KEY_ALGORITHMS: Final = (KeyAlgorithm.EC_P256, KeyAlgorithm.RSA_2048, KeyAlgorithm.RSA_3072)


class SignatureScheme(enum.StrEnum):
    ECDSA = "ecdsa"  # DER SEQUENCE{r, s}
    ECDSA_RAW = "ecdsa-raw"  # r || s, as Ethereum and JOSE want it
    EDDSA = "eddsa"  # over the message itself, not a digest
    RSA_PKCS1V15 = "rsa-pkcs1v15"
    RSA_PSS = "rsa-pss"


@dataclass(frozen=True)
class HashAlgorithm:
    name: str  # asn1crypto / hashlib name
    oid: str
    digest_size: int


HASHES: Final = {
    h.name: h
    for h in (
        HashAlgorithm("sha256", "2.16.840.1.101.3.4.2.1", 32),
        HashAlgorithm("sha384", "2.16.840.1.101.3.4.2.2", 48),
        HashAlgorithm("sha512", "2.16.840.1.101.3.4.2.3", 64),
    )
}
HASHES_BY_OID: Final = {h.oid: h for h in HASHES.values()}


def hash_algorithm(name_or_oid: object) -> HashAlgorithm:
    """The hash named `name_or_oid` (e.g. "sha256" or "2.16.840.1.101.3.4.2.1")."""
    found = (
        HASHES.get(name_or_oid) or HASHES_BY_OID.get(name_or_oid)
        if isinstance(name_or_oid, str)
        else None
    )
    if found is None:
        shown = ascii(name_or_oid)[:40] if isinstance(name_or_oid, str) else "a non-string"
        raise UnsupportedAlgorithmError(f"unsupported hash algorithm {shown}")
    return found


def digest_info(hash_alg: HashAlgorithm, digest: bytes) -> bytes:
    """DER DigestInfo, the input of a PKCS#1 v1.5 signature (RFC 8017 §9.2)."""
    if len(digest) != hash_alg.digest_size:
        raise UnsupportedAlgorithmError(
            f"a {hash_alg.name} digest is {hash_alg.digest_size} bytes, got {len(digest)}"
        )
    info = algos.DigestInfo({"digest_algorithm": {"algorithm": hash_alg.name}, "digest": digest})
    return bytes(info.dump())


def ecdsa_raw_to_der(raw: bytes) -> bytes:
    """PKCS#11 returns ECDSA as r||s; X.509, CMS and CSC want DER SEQUENCE{r, s}.
    (cryptography's encoder: about ten times faster than asn1crypto's, which
    shows in batches of a thousand signatures.)"""
    half = len(raw) // 2
    return encode_dss_signature(int.from_bytes(raw[:half]), int.from_bytes(raw[half:]))
