"""The validation service (`POST /api/v1/validate`) against the running
service: signatures it made pass with their signer and chain; tampered
documents, wrong content and wrong hashes fail on the hash; a certificate
revoked before a time-stamped signature fails it (REVOKED), before an
untimed one leaves it INDETERMINATE; a CMS from openssl under a CA this
service does not know finds no chain; hostile input is a clear 4xx and the
service keeps serving, even after a validation that ran out of time."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from asn1crypto import pem, x509

from cloudsign.appkeys import CA, SIGNING
from cloudsign.guard import Limit
from cloudsign.signing.cms import HsmOwnerSigner, LevelServices, cades_detached, pades
from cloudsign.validation import VALIDATION
from device_client.client import CloudsignClient
from hsm_bridge import HashAlgorithm, SignatureScheme
from tests.helpers import enrolled, passed_face_check
from tests.pdfs import simple_pdf

PASSWORD = "correct horse battery"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _cert(text: str) -> x509.Certificate:
    return x509.Certificate.load(pem.unarmor(text.encode())[2])


async def _validate(
    http: aiohttp.ClientSession, base_url: str, **fields: Any
) -> tuple[int, dict[str, Any]]:
    body = {k: _b64(v) if isinstance(v, bytes) else v for k, v in fields.items()}
    async with http.post(f"{base_url}/api/v1/validate", json=body) as resp:
        return resp.status, await resp.json(content_type=None)


async def _alive(http: aiohttp.ClientSession, base_url: str) -> None:
    async with http.get(f"{base_url}/healthz") as resp:
        assert resp.status == 200


async def _authorize(
    client: CloudsignClient, totp: Any, cred: dict[str, Any], hashes: list[bytes]
) -> str:
    face = await passed_face_check(client)
    return await client.authorize(
        cred["credential_id"],
        hashes,
        password=PASSWORD,
        otp=await totp.fresh_code(),
        face_challenge_id=face,
    )


async def _sign(client: CloudsignClient, cred: dict[str, Any], sad: str, **payload: Any) -> bytes:
    async with client.session.post(
        f"{client.base_url}/api/v1/me/credentials/{cred['credential_id']}/sign-document",
        json={"SAD": sad, **payload},
        headers={"Authorization": f"Bearer {client.access_token}"},
    ) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.read()


def _only(report: dict[str, Any]) -> dict[str, Any]:
    (signature,) = report["signatures"]
    return signature


async def test_service_signatures_pass_and_tampering_fails_on_the_hash(
    client: CloudsignClient, http: aiohttp.ClientSession, base_url: str
) -> None:
    totp, cred = await enrolled(client)
    certificate = _cert(cred["certificate"])
    root = _cert(cred["chain"][-1])
    content = os.urandom(2048)
    digest = hashlib.sha256(content).digest()
    pdf, plain = simple_pdf("validate me"), simple_pdf("whole")
    hashes = [digest, hashlib.sha256(pdf).digest(), hashlib.sha256(plain).digest()]
    sad = await _authorize(client, totp, cred, hashes)
    p7s = await _sign(client, cred, sad, format="cades", level="T", document_hash=_b64(digest))
    signed_pdf = await _sign(
        client, cred, sad, format="pades", level="LT", name="v.pdf", document=_b64(pdf)
    )
    whole_pdf = await _sign(
        client, cred, sad, format="pades", level="B", name="w.pdf", document=_b64(plain)
    )

    # CAdES-T with its content, and with only its hash: passed, signer and chain right.
    for fields in ({"content": content}, {"content_sha256": digest}):
        status, report = await _validate(http, base_url, signature=p7s, **fields)
        assert status == 200, report
        assert report["indication"] == "TOTAL-PASSED", report
        assert report["format"] == "CAdES" and report["sub_indication"] is None
        sig = _only(report)
        assert sig["level"] == "B-T"
        assert sig["signer"]["serial"] == format(certificate.serial_number, "x")
        assert sig["signer"]["subject"] == certificate.subject.human_friendly
        assert [c["subject"] for c in sig["chain"]][-1] == root.subject.human_friendly
        assert sig["chain"][0]["serial"] == sig["signer"]["serial"] and len(sig["chain"]) == 3
        assert sig["signature_timestamp"]["verified"] is True
        assert sig["revocation"]["status"] == "good"
        assert sig["revocation"]["checked_at"] == sig["signature_timestamp"]["time"]

    # The same signature, PEM armoured.
    armoured = pem.armor("CMS", p7s)
    status, report = await _validate(http, base_url, signature=armoured, content=content)
    assert status == 200 and report["indication"] == "TOTAL-PASSED", report

    # Other content, another hash: the signature is not over them.
    for fields in (
        {"content": content[:-1] + bytes([content[-1] ^ 1])},
        {"content_sha256": hashlib.sha256(b"something else").digest()},
    ):
        status, report = await _validate(http, base_url, signature=p7s, **fields)
        assert status == 200, report
        assert (report["indication"], report["sub_indication"]) == (
            "TOTAL-FAILED",
            "HASH_FAILURE",
        ), report

    # PAdES-LT: passed, the whole document covered.
    status, report = await _validate(http, base_url, signature=signed_pdf)
    assert status == 200 and report["indication"] == "TOTAL-PASSED", report
    sig = _only(report)
    assert report["format"] == "PAdES" and sig["level"] == "B-LT"
    assert sig["signer"]["serial"] == format(certificate.serial_number, "x")
    assert sig["chain"][-1]["subject"] == root.subject.human_friendly
    assert sig["claimed_signing_time"] is not None  # the signature dictionary's /M
    # Its validation data came in an update after it: that revision, not the file.
    coverage = sig["coverage"]
    assert coverage["whole_document"] is False and coverage["level"] == "ENTIRE_REVISION"
    assert coverage["modifications"] == "LTA_UPDATES"
    (first, second) = coverage["byte_ranges"]
    assert first["start"] == 0 and second["start"] + second["length"] < len(signed_pdf)

    # PAdES-B: nothing after it, the whole file is covered.
    status, report = await _validate(http, base_url, signature=whole_pdf)
    assert status == 200 and report["indication"] == "TOTAL-PASSED", report
    sig = _only(report)
    assert sig["level"] == "B-B" and sig["signature_timestamp"] is None
    assert sig["coverage"]["whole_document"] is True
    (first, second) = sig["coverage"]["byte_ranges"]
    assert first["start"] == 0 and second["start"] + second["length"] == len(whole_pdf)

    # One byte of the signed text changed (same length): the hash fails.
    assert signed_pdf.count(b"validate me") == 1
    tampered = signed_pdf.replace(b"validate me", b"validate ME")
    status, report = await _validate(http, base_url, signature=tampered)
    assert status == 200, report
    assert (report["indication"], report["sub_indication"]) == ("TOTAL-FAILED", "HASH_FAILURE")
    assert _only(report)["checks"]["intact"] is False


async def test_signatures_after_revocation(
    client: CloudsignClient, app: Any, http: aiohttp.ClientSession, base_url: str
) -> None:
    """Signed after the certificate was revoked, with the key used anyway
    (through the SAD store, as a thief would): with a signature time-stamp
    that proves it was made after the revocation, TOTAL-FAILED/REVOKED
    (EN 319 102-1 5.5); without one, nothing proves when it was made, so
    INDETERMINATE/REVOKED_NO_POE."""
    totp, cred = await enrolled(client)
    root, issuing = _cert(cred["chain"][-1]), _cert(cred["chain"][0])
    pdf, content = simple_pdf("after revocation"), os.urandom(512)
    digest = hashlib.sha256(content).digest()
    sad = await _authorize(client, totp, cred, [hashlib.sha256(pdf).digest(), digest])
    sads = app[SIGNING].sads
    auth = await sads.find(sad, owner_id=client.owner_id, credential_id=cred["credential_id"])

    face = await passed_face_check(client)
    wrapped = await client.wrap_password(PASSWORD, "authorize")
    revoked = await client.request(
        "POST",
        f"/api/v1/me/credentials/{cred['credential_id']}/revoke",
        {
            "password_key": wrapped.to_json(),
            "otp": await totp.fresh_code(),
            "face_challenge_id": face,
            "reason": "key-compromise",
        },
    )
    assert revoked["status"] == "revoked"

    async def sign_anyway(d: bytes, h: HashAlgorithm, scheme: SignatureScheme) -> bytes:
        (signature,) = await sads.sign(auth, sad, [d], h, scheme)
        return signature

    thief = HsmOwnerSigner(
        sign_anyway, auth.credential_id, _cert(cred["certificate"]), app[CA].chain
    )
    services = LevelServices(f"{base_url}/tsa", (root,), (issuing,))
    late_pdf = await pades(thief, pdf, session=http, level="T", services=services)
    late_cms = await cades_detached(thief, digest, "sha256", session=http, level="B")

    status, report = await _validate(http, base_url, signature=late_pdf)
    assert status == 200, report
    assert (report["indication"], report["sub_indication"]) == ("TOTAL-FAILED", "REVOKED"), report
    sig = _only(report)
    assert sig["checks"]["intact"] and sig["checks"]["signature_valid"]
    assert sig["signature_timestamp"]["verified"] is True
    assert sig["revocation"]["status"] == "revoked"
    assert sig["revocation"]["reason"] == "key_compromise"
    assert sig["revocation"]["revoked_at"] <= sig["signature_timestamp"]["time"]

    status, report = await _validate(http, base_url, signature=late_cms, content=content)
    assert status == 200, report
    assert (report["indication"], report["sub_indication"]) == (
        "INDETERMINATE",
        "REVOKED_NO_POE",
    ), report
    assert _only(report)["revocation"]["status"] == "revoked"
    assert _only(report)["level"] == "B-B"


def _openssl(*args: str | Path) -> None:
    result = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


async def test_openssl_signature_under_an_unknown_ca_finds_no_chain(
    http: aiohttp.ClientSession, base_url: str, tmp_path: Path
) -> None:
    """A CA this service never heard of: a valid signature, no chain to our root."""
    ca_key, ca, key, csr, leaf = (tmp_path / n for n in ("ca.key", "ca.pem", "k", "csr", "leaf"))
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        ca_key,
        "-out",
        ca,
        "-subj",
        "/CN=Elsewhere Test CA",
        "-days",
        "2",
    )
    _openssl(
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        key,
        "-out",
        csr,
        "-subj",
        "/CN=Somebody Else",
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        csr,
        "-CA",
        ca,
        "-CAkey",
        ca_key,
        "-set_serial",
        "7",
        "-days",
        "2",
        "-out",
        leaf,
    )
    doc = tmp_path / "doc"
    doc.write_bytes(os.urandom(1000))
    detached, attached = tmp_path / "d.p7s", tmp_path / "a.p7s"
    common = ("-signer", leaf, "-inkey", key, "-certfile", ca, "-md", "sha256", "-binary")
    _openssl("cms", "-sign", "-in", doc, *common, "-outform", "DER", "-out", detached)
    _openssl("cms", "-sign", "-nodetach", "-in", doc, *common, "-outform", "PEM", "-out", attached)

    for fields in (
        {"signature": detached.read_bytes(), "content": doc.read_bytes()},
        {
            "signature": detached.read_bytes(),
            "content_sha256": hashlib.sha256(doc.read_bytes()).digest(),
        },
        {"signature": attached.read_bytes()},
    ):
        status, report = await _validate(http, base_url, **fields)
        assert status == 200, report
        assert (report["indication"], report["sub_indication"]) == (
            "INDETERMINATE",
            "NO_CERTIFICATE_CHAIN_FOUND",
        ), report
        sig = _only(report)
        assert sig["checks"]["intact"] and sig["checks"]["signature_valid"]
        assert sig["signer"]["subject"] == "Common Name: Somebody Else"
        assert sig["chain"] == []
    status, report = await _validate(http, base_url, signature=attached.read_bytes())
    assert _only(report)["content"] == "attached"
    # Detached, and neither its content nor its hash: nothing to check it against.
    status, report = await _validate(http, base_url, signature=detached.read_bytes())
    assert status == 400 and "content" in report["detail"], report


def _nested_der(depth: int) -> bytes:
    inner = b"\x05\x00"
    for _ in range(depth):
        n = len(inner)
        length = (
            bytes([n])
            if n < 128
            else bytes([0x80 | ((n.bit_length() + 7) // 8)])
            + n.to_bytes((n.bit_length() + 7) // 8, "big")
        )
        inner = b"\x30" + length + inner
    return inner


def _pdf_with(catalog_entries: bytes) -> bytes:
    """A well-formed PDF (header, objects, xref, trailer) whose catalog holds
    `catalog_entries`."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R " + catalog_entries + b" >>",
        b"<< /Type /Pages /Kids [] /Count 0 >>",
    ]
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size 3 /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


DEEP_FIELDS = b"/AcroForm << /Fields " + b"[" * 50_000 + b"]" * 50_000 + b" >>"

#: (what, body fields, status, reason or code)
HOSTILE: list[tuple[str, dict[str, Any], int, str]] = [
    ("garbage", {"signature": os.urandom(4096)}, 400, "malformed"),
    ("a PDF without a signature", {"signature": simple_pdf("unsigned")}, 422, "no_signature"),
    ("a broken PDF", {"signature": b"%PDF-1.7\n" + os.urandom(2000)}, 400, "malformed"),
    ("a PDF whose form nests 50000 deep", {"signature": _pdf_with(DEEP_FIELDS)}, 400, "too_deep"),
    ("DER nested 5000 deep", {"signature": _nested_der(5000)}, 400, "malformed"),
    ("an INTEGER, not a CMS", {"signature": b"0\x03\x02\x01\x01"}, 400, "malformed"),
    (
        "PEM of garbage",
        {"signature": b"-----BEGIN CMS-----\n!!!\n-----END CMS-----\n"},
        400,
        "malformed",
    ),
    ("empty", {"signature": ""}, 400, "invalid_field"),
    ("not base64", {"signature": "*&^%"}, 400, "invalid_field"),
    ("no signature field", {"content": "AAAA"}, 400, "invalid_field"),
    (
        "a short hash",
        {"signature": "MAA=", "content_sha256": _b64(b"x" * 31)},
        400,
        "invalid_field",
    ),
    ("an unknown field", {"signature": "MAA=", "extra": 1}, 400, "invalid_field"),
]


@pytest.mark.parametrize(
    ("label", "fields", "expected", "why"), HOSTILE, ids=[h[0] for h in HOSTILE]
)
async def test_hostile_input_is_a_clear_4xx(
    label: str,
    fields: dict[str, Any],
    expected: int,
    why: str,
    http: aiohttp.ClientSession,
    base_url: str,
) -> None:
    status, report = await _validate(http, base_url, **fields)
    assert status == expected, (label, status, report)
    assert report["status"] == status and report["detail"], report
    assert why in (report["code"], report.get("reason")), report
    await _alive(http, base_url)


async def test_not_json_and_oversized(app: Any, http: aiohttp.ClientSession, base_url: str) -> None:
    async with http.post(f"{base_url}/api/v1/validate", data=b"%PDF-1.7") as resp:
        assert resp.status == 415
        assert resp.content_type == "application/problem+json"
    limit = app[VALIDATION].max_bytes
    big = b'{"signature": "' + b"A" * (4 * (limit // 3) + 8192) + b'"}'
    async with http.post(
        f"{base_url}/api/v1/validate", data=big, headers={"Content-Type": "application/json"}
    ) as resp:
        assert resp.status == 413
        assert (await resp.json(content_type=None))["code"] == "payload_too_large"
    await _alive(http, base_url)


async def test_a_validation_past_its_time_limit_is_refused_and_the_service_keeps_serving(
    client: CloudsignClient, app: Any, http: aiohttp.ClientSession, base_url: str
) -> None:
    """The time limit lowered to 1 ms: no validation (a worker round trip,
    pyHanko, OCSP over HTTP) fits, so this one is stopped: 422, the worker
    pool replaced, and the next validation is answered by the new one."""
    pool = app[VALIDATION].pool
    document = simple_pdf("slow") + b"%" + b"x" * (4 << 20) + b"\n"
    saved = pool.timeout
    pool.timeout = 0.001
    try:
        status, report = await _validate(http, base_url, signature=document)
    finally:
        pool.timeout = saved
    assert status == 422, report
    assert report["code"] == "validation_timeout"
    await _alive(http, base_url)
    status, report = await _validate(http, base_url, signature=simple_pdf("unsigned"))
    assert status == 422 and report["reason"] == "no_signature", report


async def test_requests_are_counted_per_address(
    app: Any, http: aiohttp.ClientSession, base_url: str
) -> None:
    service = app[VALIDATION]
    saved = service.limit
    service.limit = Limit(
        f"validation.test.{os.urandom(4).hex()}", 2, timedelta(hours=1), resets_on_success=False
    )
    try:
        answers = [(await _validate(http, base_url, signature="MAA="))[0] for _ in range(3)]
    finally:
        service.limit = saved
    assert answers[:2] == [400, 400] and answers[2] == 429
