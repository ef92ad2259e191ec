"""Signatures whose signing certificate has expired by validation time
(ETSI EN 319 102-1): without a proof of existence from before the expiry
(B-B, or a time-stamp made after it) the answer is INDETERMINATE/
OUT_OF_BOUNDS_NO_POE; a signature time-stamp from before the expiry (B-T) is
that proof, and the signature passes.

Two ways to an expired certificate, both honest:

- by this service: its issuing CA (the HSM key) issues a certificate that
  ended ten seconds ago, registered like any other (its OCSP answers for
  it); the signature is made with its key by this service's signing code,
  and time-stamped by this service's TSA while the certificate was still
  valid: the TSA's clock is set back inside the certificate's life (and the
  TSA certificate's), as a time-stamp asked for then would be;
- by independent tools: a CA and an expired certificate made with
  `cryptography`, a CMS signed by `openssl cms -sign`, and for B-T a
  time-stamp token from a TSA under that CA (pyHanko's test time-stamper at
  a moment inside the certificate's life) added as the signer's
  signature-time-stamp attribute. The service trusts only its own root over
  HTTP, so these go to the same validation service (its worker pool) with
  that CA as the trust root.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from asn1crypto import cms, keys, x509
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pyhanko.sign.timestamps import DummyTimeStamper

from cloudsign.appkeys import CA, DATABASE, STATUS
from cloudsign.ca.identity import Identity
from cloudsign.ca.registry import register
from cloudsign.ca.x509 import build_certificate, new_serial
from cloudsign.signing.cms import HsmOwnerSigner, LevelServices, cades_detached, pades
from cloudsign.validation import VALIDATION
from hsm_bridge import HashAlgorithm, SignatureScheme
from tests.helpers import person
from tests.pdfs import simple_pdf
from tests.validation.test_validation import _only, _validate

NO_POE = ("INDETERMINATE", "OUT_OF_BOUNDS_NO_POE")


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@contextmanager
def _tsa_clock_at(app: Any, moment: datetime) -> Iterator[None]:
    tsa = app[STATUS].tsa
    saved = tsa.clock
    tsa.clock = lambda: moment
    try:
        yield
    finally:
        tsa.clock = saved


async def _expired_service_certificate(
    app: Any,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate, datetime]:
    """A certificate from this service's issuing CA, the same extensions as a
    citizen's (CRL, delta CRL, OCSP), that began with the TSA certificate and
    ended ten seconds ago; registered, so OCSP and CRLs answer for it. Also
    a moment inside its life and the TSA certificate's."""
    ca = app[CA]
    key = ec.generate_private_key(ec.SECP256R1())
    spki = keys.PublicKeyInfo.load(
        key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    identity = Identity.from_json(person(given_name="Мерзімі өткен"))
    tsa_from = app[STATUS].tsa.identity.certificate.not_valid_before
    not_after = _now() - timedelta(seconds=10)
    not_before = max(tsa_from, not_after - timedelta(days=1))
    assert not_after - not_before >= timedelta(minutes=4), (tsa_from, not_after)
    cert = await build_certificate(
        signer=ca.issuing_signer,
        issuer=ca.issuing.subject,
        issuer_spki=ca.issuing.public_key,
        subject=x509.Name.build(identity.subject()),
        subject_spki=spki,
        serial=new_serial(),
        not_before=not_before,
        not_after=not_after,
        extensions=ca._owner_extensions(identity),
    )
    async with app[DATABASE].transaction() as conn:
        await register(conn, cert, at=_now())
    return key, cert, not_before + (not_after - not_before) / 2


def _local_signer(app: Any, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> Any:
    async def sign(digest: bytes, h: HashAlgorithm, scheme: SignatureScheme) -> bytes:
        assert scheme == SignatureScheme.ECDSA and h.name == "sha256"
        return key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))

    return HsmOwnerSigner(sign, "expired-test", cert, app[CA].chain)


async def test_service_certificate_expired_without_and_with_proof_of_existence(
    app: Any, http: aiohttp.ClientSession, base_url: str
) -> None:
    key, cert, inside = await _expired_service_certificate(app)
    assert cert.not_valid_after < datetime.now(UTC)
    signer = _local_signer(app, key, cert)
    ca = app[CA]
    services = LevelServices(f"{base_url}/tsa", (ca.root,), (ca.issuing,))
    content = os.urandom(700)
    digest = hashlib.sha256(content).digest()
    pdf = simple_pdf("signed before it expired")

    # B-B: nothing shows the signature existed before the certificate ended.
    plain = await cades_detached(signer, digest, "sha256", session=http, level="B")
    status, report = await _validate(http, base_url, signature=plain, content=content)
    assert status == 200, report
    assert (report["indication"], report["sub_indication"]) == NO_POE, report
    sig = _only(report)
    assert sig["checks"]["intact"] and sig["checks"]["signature_valid"]
    assert sig["level"] == "B-B" and sig["signer"]["not_after"] < report["validation_time"]

    # B-T, time-stamped now (after the expiry): the time-stamp is no proof either.
    late = await cades_detached(
        signer, digest, "sha256", session=http, level="T", services=services
    )
    status, report = await _validate(http, base_url, signature=late, content=content)
    assert status == 200, report
    assert (report["indication"], report["sub_indication"]) == NO_POE, report
    sig = _only(report)
    assert sig["signature_timestamp"]["verified"] is True
    assert sig["signature_timestamp"]["time"] > sig["signer"]["not_after"]

    # B-T (CAdES and PAdES), time-stamped while the certificate was valid: passed.
    with _tsa_clock_at(app, inside):
        early = await cades_detached(
            signer, digest, "sha256", session=http, level="T", services=services
        )
        early_pdf = await pades(signer, pdf, session=http, level="T", services=services)
    for fields in ({"signature": early, "content": content}, {"signature": early_pdf}):
        status, report = await _validate(http, base_url, **fields)
        assert status == 200, report
        assert (report["indication"], report["sub_indication"]) == ("TOTAL-PASSED", None), report
        sig = _only(report)
        assert sig["signature_timestamp"]["verified"] is True
        assert sig["signature_timestamp"]["time"] == inside.isoformat()
        assert sig["signature_timestamp"]["time"] < sig["signer"]["not_after"]
        assert sig["revocation"]["status"] == "good"
        assert sig["revocation"]["checked_at"] == inside.isoformat()
        assert sig["chain"][0]["serial"] == format(cert.serial_number, "x")


# -- by independent tools ------------------------------------------------------------


def _cx_cert(
    subject: str,
    issuer: str,
    public: Any,
    signer: Any,
    *,
    valid: tuple[datetime, datetime],
    ca: bool = False,
    tsa: bool = False,
) -> cx509.Certificate:
    builder = (
        cx509.CertificateBuilder()
        .subject_name(cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(public)
        .serial_number(cx509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(cx509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(cx509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            cx509.KeyUsage(
                digital_signature=not ca,
                content_commitment=not ca and not tsa,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if tsa:
        builder = builder.add_extension(
            cx509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True
        )
    return builder.sign(signer, hashes.SHA256())


def _asn1(cert: cx509.Certificate) -> x509.Certificate:
    return x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def _openssl(*args: str | Path) -> None:
    result = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


async def _with_signature_timestamp(p7s: bytes, stamper: DummyTimeStamper) -> bytes:
    """The CMS with a signature-time-stamp-token over its signature value
    (ETSI EN 319 122-1 5.3)."""
    info = cms.ContentInfo.load(p7s)
    signer_info = info["content"]["signer_infos"][0]
    imprint = hashlib.sha256(signer_info["signature"].native).digest()
    token = await stamper.async_timestamp(imprint, "sha256")
    attribute = cms.CMSAttribute({"type": "signature_time_stamp_token", "values": [token]})
    signer_info["unsigned_attrs"] = cms.CMSAttributes([attribute])
    return bytes(info.dump(force=True))


async def test_independent_expired_certificate_openssl(app: Any, tmp_path: Path) -> None:
    now = _now()
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    tsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # pyHanko's: RSA
    ca = _cx_cert(
        "Independent Test CA",
        "Independent Test CA",
        ca_key.public_key(),
        ca_key,
        valid=(now - timedelta(days=30), now + timedelta(days=30)),
        ca=True,
    )
    tsa = _cx_cert(
        "Independent Test TSA",
        "Independent Test CA",
        tsa_key.public_key(),
        ca_key,
        valid=(now - timedelta(days=30), now + timedelta(days=30)),
        tsa=True,
    )
    leaf = _cx_cert(
        "Expired Signer",
        "Independent Test CA",
        key.public_key(),
        ca_key,
        valid=(now - timedelta(days=10), now - timedelta(days=1)),
    )
    files = {"ca.pem": ca, "leaf.pem": leaf}
    for name, cert in files.items():
        (tmp_path / name).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    doc, p7s = tmp_path / "doc", tmp_path / "d.p7s"
    doc.write_bytes(os.urandom(900))
    _openssl(
        "cms",
        "-sign",
        "-binary",
        "-md",
        "sha256",
        "-in",
        doc,
        "-signer",
        tmp_path / "leaf.pem",
        "-inkey",
        tmp_path / "key.pem",
        "-certfile",
        tmp_path / "ca.pem",
        "-outform",
        "DER",
        "-out",
        p7s,
    )
    plain = p7s.read_bytes()
    tsa_key_asn1 = keys.PrivateKeyInfo.load(
        tsa_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )

    def stamper(at: datetime) -> DummyTimeStamper:
        return DummyTimeStamper(
            tsa_cert=_asn1(tsa),
            tsa_key=tsa_key_asn1,
            certs_to_embed=[_asn1(ca)],
            fixed_dt=at,
        )

    before = await _with_signature_timestamp(plain, stamper(now - timedelta(days=5)))
    after = await _with_signature_timestamp(plain, stamper(now - timedelta(hours=2)))

    service = app[VALIDATION]

    async def check(signature: bytes) -> dict[str, Any]:
        return await service.validate(
            signature,
            content=doc.read_bytes(),
            content_sha256=None,
            trust_roots=[_asn1(ca)],
            other_certs=[_asn1(tsa)],
        )

    # B-B, and B-T with a time-stamp after the expiry: no proof of existence before it.
    for signature, level in ((plain, "B-B"), (after, "B-T")):
        report = await check(signature)
        assert (report["indication"], report["sub_indication"]) == NO_POE, report
        sig = _only(report)
        assert sig["level"] == level
        assert sig["checks"]["intact"] and sig["checks"]["signature_valid"]
        assert sig["signer"]["subject"] == "Common Name: Expired Signer"
    assert _only(await check(after))["signature_timestamp"]["verified"] is True

    # B-T with a time-stamp from before the expiry: the proof; passed.
    report = await check(before)
    assert (report["indication"], report["sub_indication"]) == ("TOTAL-PASSED", None), report
    sig = _only(report)
    assert sig["signature_timestamp"]["verified"] is True
    assert sig["signature_timestamp"]["time"] == (now - timedelta(days=5)).isoformat()
    assert [c["subject"] for c in sig["chain"]] == [
        "Common Name: Expired Signer",
        "Common Name: Independent Test CA",
    ]
