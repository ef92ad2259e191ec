"""Archival levels through the real server: PAdES-B-LTA (citizen API and CSC
signDoc), CAdES-B-LT from a hash only, and `cloudsign extend`, each checked
by a verifier other than the code that made it (pyHanko's AdES LTA
validation from the document's own DSS, `openssl cms -verify` trusting only
this CA's root) and by the service's own `POST /api/v1/validate`."""

from __future__ import annotations

import base64
import hashlib
import io
import os
from pathlib import Path
from typing import Any

import aiohttp
from asn1crypto import cms, pem, x509
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.ades.report import AdESPassed
from pyhanko.sign.validation.ades import ades_lta_validation
from pyhanko.sign.validation.policy_decl import (
    PdfSignatureValidationSpec,
    RevinfoOnlineFetchingRule,
    RevocationInfoGatheringSpec,
    SignatureValidationSpec,
)
from pyhanko_certvalidator.context import CertValidationPolicySpec
from pyhanko_certvalidator.policy_decl import CertRevTrustPolicy, RevocationCheckingPolicy
from pyhanko_certvalidator.registry import SimpleTrustManager
from sqlalchemy import select

from cloudsign.appkeys import DATABASE
from cloudsign.cli import build_parser, extend_signatures
from cloudsign.settings import Settings
from cloudsign.signing.cms import pdf_timestamps
from cloudsign.storage.schema import events
from device_client.client import CloudsignClient
from tests.helpers import enrolled, openssl_cms_verify, passed_face_check
from tests.pdfs import simple_pdf

PASSWORD = "correct horse battery"
#: Far enough that the TSA certificate of any time-stamp made now expires within it.
EVERYTHING_DUE_DAYS = 365 * 100


def _cert(text: str) -> x509.Certificate:
    return x509.Certificate.load(pem.unarmor(text.encode())[2])


async def _authorize(
    client: CloudsignClient, totp: Any, cred: dict[str, Any], hashes: list[bytes]
) -> str:
    face = await passed_face_check(client)  # first: it is the slow part
    return await client.authorize(
        cred["credential_id"],
        hashes,
        password=PASSWORD,
        otp=await totp.fresh_code(),
        face_challenge_id=face,
    )


async def _sign(
    client: CloudsignClient, cred: dict[str, Any], body: dict[str, Any]
) -> tuple[int, bytes, str | None]:
    async with client.session.post(
        f"{client.base_url}/api/v1/me/credentials/{cred['credential_id']}/sign-document",
        json=body,
        headers={"Authorization": f"Bearer {client.access_token}"},
    ) as resp:
        return resp.status, await resp.read(), resp.headers.get("X-Signature-Id")


async def _stored(client: CloudsignClient, signature_id: str) -> bytes:
    async with client.session.get(
        f"{client.base_url}/api/v1/me/documents/{signature_id}",
        headers={"Authorization": f"Bearer {client.access_token}"},
    ) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.read()


async def _service_validate(
    http: aiohttp.ClientSession, base_url: str, **fields: bytes
) -> dict[str, Any]:
    body = {k: base64.b64encode(v).decode() for k, v in fields.items()}
    async with http.post(f"{base_url}/api/v1/validate", json=body) as resp:
        assert resp.status == 200, await resp.text()
        report: dict[str, Any] = await resp.json()
    return report


async def _pyhanko_lta(pdf: bytes, root: x509.Certificate) -> Any:
    """pyHanko's EN 319 102-1 5.6.3 validation (long-term availability and
    integrity), trusting only this CA's root, revocation hard-fail, and from
    the document alone: no fetching, so the DSS must hold everything."""
    spec = PdfSignatureValidationSpec(
        SignatureValidationSpec(
            cert_validation_policy=CertValidationPolicySpec(
                trust_manager=SimpleTrustManager.build([root]),
                revinfo_policy=CertRevTrustPolicy(
                    RevocationCheckingPolicy.from_legacy("hard-fail")
                ),
            ),
            revinfo_gathering_policy=RevocationInfoGatheringSpec(
                online_fetching_rule=RevinfoOnlineFetchingRule.LOCAL_ONLY
            ),
        )
    )
    reader = PdfFileReader(io.BytesIO(pdf))
    (signature,) = [e for e in reader.embedded_signatures if e.sig_object_type != "/DocTimeStamp"]
    return await ades_lta_validation(signature, spec)


def _doc_timestamps(pdf: bytes) -> int:
    reader = PdfFileReader(io.BytesIO(pdf))
    return sum(1 for e in reader.embedded_signatures if e.sig_object_type == "/DocTimeStamp")


async def _assert_b_lta(
    pdf: bytes, cred: dict[str, Any], http: aiohttp.ClientSession, base_url: str
) -> None:
    result = await _pyhanko_lta(pdf, _cert(cred["chain"][-1]))
    assert result.ades_subindic is AdESPassed.OK, result.failure_msg
    assert result.oldest_evidence_record_timestamp is not None
    report = await _service_validate(http, base_url, signature=pdf)
    assert report["indication"] == "TOTAL-PASSED", report
    (sig,) = report["signatures"]
    assert sig["level"] == "B-LTA", sig


# -- PAdES-B-LTA -------------------------------------------------------------------


async def test_pades_lta_citizen_api_validates_as_b_lta(
    client: CloudsignClient, http: aiohttp.ClientSession, base_url: str
) -> None:
    totp, cred = await enrolled(client)
    pdf = simple_pdf("archival")
    sad = await _authorize(client, totp, cred, [hashlib.sha256(pdf).digest()])
    status, signed, signature_id = await _sign(
        client,
        cred,
        {
            "SAD": sad,
            "format": "pades",
            "level": "LTA",
            "name": "archival.pdf",
            "document": base64.b64encode(pdf).decode(),
        },
    )
    assert status == 200, signed
    assert signed.startswith(pdf)  # an incremental update of the document
    assert _doc_timestamps(signed) == 1
    await _assert_b_lta(signed, cred, http, base_url)
    # The cabinet keeps exactly what was returned.
    assert signature_id is not None
    stored = await _stored(client, signature_id)
    assert stored == signed


async def test_pades_lta_through_csc_sign_doc(
    client: CloudsignClient, http: aiohttp.ClientSession, base_url: str
) -> None:
    totp, cred = await enrolled(client)
    pdf = simple_pdf("csc archival")
    face = await passed_face_check(client)
    wrapped = await client.wrap_password(PASSWORD, "authorize")
    auth = await client.request(
        "POST",
        "/csc/v2/credentials/authorize",
        {
            "credentialID": cred["credential_id"],
            "numSignatures": 1,
            "hashes": [base64.b64encode(hashlib.sha256(pdf).digest()).decode()],
            "hashAlgorithmOID": "2.16.840.1.101.3.4.2.1",
            "authData": [
                {"id": "PIN", "value": wrapped.to_pin()},
                {"id": "OTP", "value": await totp.fresh_code()},
                {"id": "FACE", "value": face},
            ],
        },
    )
    document = {"document": base64.b64encode(pdf).decode(), "signature_format": "P"}
    async with client.session.post(
        f"{client.base_url}/csc/v2/signatures/signDoc",
        json={
            "credentialID": cred["credential_id"],
            "SAD": auth["SAD"],
            "documents": [{**document, "conformance_level": "AdES-B-LTX"}],
        },
        headers={"Authorization": f"Bearer {client.access_token}"},
    ) as resp:
        assert resp.status == 400
        assert "conformance_level" in await resp.text()
    signed = await client.request(
        "POST",
        "/csc/v2/signatures/signDoc",
        {
            "credentialID": cred["credential_id"],
            "SAD": auth["SAD"],
            "documents": [{**document, "conformance_level": "AdES-B-LTA"}],
        },
    )
    out = base64.b64decode(signed["DocumentWithSignature"][0])
    assert _doc_timestamps(out) == 1
    await _assert_b_lta(out, cred, http, base_url)


# -- CAdES-B-LT --------------------------------------------------------------------


async def test_cades_lt_from_a_hash_carries_its_validation_data(
    client: CloudsignClient, http: aiohttp.ClientSession, base_url: str, tmp_path: Path
) -> None:
    totp, cred = await enrolled(client)
    content = os.urandom(8192)
    digest = hashlib.sha256(content).digest()
    sad = await _authorize(client, totp, cred, [digest])
    body = {"SAD": sad, "format": "cades", "document_hash": base64.b64encode(digest).decode()}

    # Refusals first, before the SAD is touched: an unknown level, and LTA
    # (not offered for CAdES).
    for level in ("LTX", "LTA"):
        status, answer, _id = await _sign(client, cred, {**body, "level": level})
        assert status == 400, answer
        assert b'"field": "level"' in answer or b'"field":"level"' in answer, answer

    # From the hash only: LT needs nothing of the content.
    status, p7s, _id = await _sign(client, cred, {**body, "level": "LT"})
    assert status == 200, p7s
    signed = cms.ContentInfo.load(p7s)["content"]
    signer_info = signed["signer_infos"][0]
    unsigned = {a["type"].native: a for a in signer_info["unsigned_attrs"]}
    assert {"signature_time_stamp_token", "certificate_values", "revocation_values"} <= set(
        unsigned
    )
    # The chain (signer, issuing CA, root) and the TSA's, in SignedData.certificates ...
    certs = {c.chosen.subject.human_friendly for c in signed["certificates"]}
    chain = {_cert(c).subject.human_friendly for c in cred["chain"]}
    assert chain <= certs
    assert _cert(cred["certificate"]).subject.human_friendly in certs
    # ... and this service's revocation data in SignedData.crls: an OCSP
    # response for the signer, from this service's responder.
    revinfo = list(signed["crls"])
    ocsps = [r.chosen["other_rev_info"] for r in revinfo if r.name == "other"]
    assert ocsps, "no OCSP response embedded"
    serials = {
        single["cert_id"]["serial_number"].native
        for r in ocsps
        for single in r["response_bytes"]["response"].parsed["tbs_response_data"]["responses"]
    }
    assert _cert(cred["certificate"]).serial_number in serials
    assert all(r["response_status"].native == "successful" for r in ocsps)
    values = unsigned["revocation_values"]["values"][0]
    assert len(values["ocsp_vals"]) == len(ocsps)

    code, out = await openssl_cms_verify(p7s, content, cred["chain"][-1], tmp_path)
    assert code == 0, out

    for fields in ({"content": content}, {"content_sha256": digest}):
        report = await _service_validate(http, base_url, signature=p7s, **fields)
        assert report["indication"] == "TOTAL-PASSED", report
        assert report["signatures"][0]["level"] == "B-LT", report

    # The openssl check can fail: the same signature over other content does not verify.
    other = tmp_path / "other"
    other.mkdir()
    code, out = await openssl_cms_verify(p7s, content + b"x", cred["chain"][-1], other)
    assert code != 0, "openssl accepted the signature over other content"


# -- cloudsign extend ------------------------------------------------------------


async def test_extend_adds_a_document_timestamp_and_stays_b_lta(
    client: CloudsignClient,
    http: aiohttp.ClientSession,
    base_url: str,
    settings: Settings,
    app: Any,
) -> None:
    totp, cred = await enrolled(client)
    lta_pdf, t_pdf = simple_pdf("to extend"), simple_pdf("only T")
    sad = await _authorize(
        client, totp, cred, [hashlib.sha256(lta_pdf).digest(), hashlib.sha256(t_pdf).digest()]
    )
    ids: dict[str, str] = {}
    for level, pdf in (("LTA", lta_pdf), ("T", t_pdf)):
        status, _signed, signature_id = await _sign(
            client,
            cred,
            {
                "SAD": sad,
                "format": "pades",
                "level": level,
                "document": base64.b64encode(pdf).decode(),
            },
        )
        assert status == 200 and signature_id is not None
        ids[level] = signature_id
    before = await _stored(client, ids["LTA"])
    assert _doc_timestamps(before) == 1

    # The command line parses as documented.
    args = build_parser().parse_args(["extend", "--before", "30", "--dry-run"])
    assert args.before == 30 and args.dry_run

    # Its TSA certificate is years from expiry: not due within 0 days.
    report = await extend_signatures(settings, before_days=0, dry_run=True, actor="test")
    assert ids["LTA"] not in report["due_ids"]
    assert ids["T"] not in report["due_ids"]
    # Due within a century; a dry run changes nothing.
    report = await extend_signatures(
        settings, before_days=EVERYTHING_DUE_DAYS, dry_run=True, actor="test"
    )
    assert ids["LTA"] in report["due_ids"] and report["extended"] == 0
    assert report["not_long_term"] >= 1  # the T signature
    assert await _stored(client, ids["LTA"]) == before

    report = await extend_signatures(
        settings, before_days=EVERYTHING_DUE_DAYS, dry_run=False, actor="operator:cli:test"
    )
    # Only this test's documents are asserted on: the cabinet holds every
    # other test's signatures too.
    assert ids["LTA"] not in report["failed_ids"], report
    assert ids["LTA"] in report["extended_ids"] and ids["T"] not in report["due_ids"]

    after = await _stored(client, ids["LTA"])
    assert after.startswith(before) and len(after) > len(before)
    assert _doc_timestamps(after) == 2
    stamps = pdf_timestamps(after)
    assert stamps.document_timestamps == 2 and stamps.long_term
    await _assert_b_lta(after, cred, http, base_url)
    # The T signature is untouched.
    t_after = await _stored(client, ids["T"])
    assert _doc_timestamps(t_after) == 0

    # One audit event for the extension, naming the signature.
    async with app[DATABASE].read() as conn:
        rows = (
            await conn.execute(
                select(events.c.event_type, events.c.owner_id, events.c.data).where(
                    events.c.event_type == "operator.action"
                )
            )
        ).all()
    mine = [
        r
        for r in rows
        if r.data.get("action") == "signature.extend" and r.data.get("signature_id") == ids["LTA"]
    ]
    assert len(mine) == 1, mine
    assert mine[0].owner_id == client.owner_id
    assert mine[0].data["operator"] == "operator:cli:test"
    assert mine[0].data["document_timestamps"] == 2
