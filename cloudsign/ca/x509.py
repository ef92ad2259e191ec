"""X.509 v3 certificates (RFC 5280) built with asn1crypto and signed in the HSM.

`cryptography`'s builder wants a private key object in process memory, which
our keys never are; so the TBSCertificate is built here and its signature
comes from an `HsmKeySigner`.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from asn1crypto import algos, keys, x509

from hsm_bridge import KeyAlgorithm, ServiceKeys, SignatureScheme, hash_algorithm

#: Serial numbers: 159 random bits, positive, at most 20 octets (RFC 5280 §4.1.2.2).
SERIAL_BITS: Final = 159


def new_serial() -> int:
    return secrets.randbits(SERIAL_BITS) | (1 << (SERIAL_BITS - 1))


def serial_hex(serial: int) -> str:
    return format(serial, "x")


@dataclass(frozen=True)
class HsmKeySigner:
    """A long-lived signing key in the HSM (CA, OCSP, TSA)."""

    bridge: ServiceKeys
    label: str
    algorithm: KeyAlgorithm

    @property
    def hash_name(self) -> str:
        return "sha384" if self.algorithm is KeyAlgorithm.EC_P384 else "sha256"

    @property
    def signature_algorithm(self) -> str:
        """asn1crypto name of the signature algorithm."""
        return f"{self.hash_name}_{'ecdsa' if self.algorithm.is_ec else 'rsa'}"

    async def sign(self, data: bytes) -> bytes:
        h = hash_algorithm(self.hash_name)
        digest = hashlib.new(h.name, data).digest()
        scheme = SignatureScheme.ECDSA if self.algorithm.is_ec else SignatureScheme.RSA_PKCS1V15
        return await self.bridge.sign_digest(self.label, self.algorithm, digest, h, scheme)


def key_identifier(spki: keys.PublicKeyInfo) -> bytes:
    """RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits."""
    return hashlib.sha1(spki["public_key"].contents[1:], usedforsecurity=False).digest()


async def build_certificate(
    *,
    signer: HsmKeySigner,
    issuer: x509.Name,
    issuer_spki: keys.PublicKeyInfo,
    subject: x509.Name,
    subject_spki: keys.PublicKeyInfo,
    serial: int,
    not_before: datetime,
    not_after: datetime,
    extensions: list[dict[str, Any]],
) -> x509.Certificate:
    sig_alg = algos.SignedDigestAlgorithm({"algorithm": signer.signature_algorithm})
    exts = [
        {
            "extn_id": "key_identifier",
            "critical": False,
            "extn_value": key_identifier(subject_spki),
        },
        {
            "extn_id": "authority_key_identifier",
            "critical": False,
            "extn_value": {"key_identifier": key_identifier(issuer_spki)},
        },
        *extensions,
    ]
    if issuer.dump() == subject.dump() and issuer_spki.dump() == subject_spki.dump():
        exts = [e for e in exts if e["extn_id"] != "authority_key_identifier"]
    tbs = x509.TbsCertificate(
        {
            "version": "v3",
            "serial_number": serial,
            "signature": sig_alg,
            "issuer": issuer,
            "validity": {
                "not_before": _time(not_before),
                "not_after": _time(not_after),
            },
            "subject": subject,
            "subject_public_key_info": subject_spki,
            "extensions": exts,
        }
    )
    signature = await signer.sign(tbs.dump())
    return x509.Certificate(
        {"tbs_certificate": tbs, "signature_algorithm": sig_alg, "signature_value": signature}
    )


def _time(value: datetime) -> x509.Time:
    # RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050.
    if value.year >= 2050:
        return x509.Time({"general_time": value})
    return x509.Time({"utc_time": value})


def to_pem(cert: x509.Certificate) -> str:
    from asn1crypto import pem

    armored: bytes = pem.armor("CERTIFICATE", cert.dump())
    return armored.decode()
