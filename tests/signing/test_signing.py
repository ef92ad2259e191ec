"""Authorise, then sign: real HTTP, real SoftHSM2, real dlib, both databases."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from asn1crypto import pem, x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import signers
from pyhanko.sign.signers.csc_signer import (
    CSCServiceSessionInfo,
    CSCSigner,
    fetch_certs_in_csc_credential,
)
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko_certvalidator import ValidationContext
from sqlalchemy import select, update

from cloudsign.appkeys import DATABASE
from cloudsign.signing.tables import sads
from cloudsign.storage.schema import events
from device_client.client import ApiError, CloudsignClient
from device_client.csc_auth import CloudsignAuthorizationManager
from tests.helpers import enrolled, new_client, passed_face_check
from tests.pdfs import simple_pdf
from tests.staff import Staff


def openssl_cms_verify(
    sig: Path, doc: Path, root: Path, chain: Path
) -> subprocess.CompletedProcess[str]:
    """`openssl cms -verify` of a detached DER signature over `doc`."""
    return subprocess.run(
        [
            "openssl",
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "DER",
            "-in",
            str(sig),
            "-content",
            str(doc),
            "-CAfile",
            str(root),
            "-certfile",
            str(chain),
            "-out",
            "/dev/null",
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def _public_key(cred: dict[str, Any]) -> Any:
    cert = x509.Certificate.load(pem.unarmor(cred["certificate"].encode())[2])
    return serialization.load_der_public_key(cert.public_key.dump())


def _root(cred: dict[str, Any]) -> x509.Certificate:
    return x509.Certificate.load(pem.unarmor(cred["chain"][-1].encode())[2])


async def _sad(
    client: CloudsignClient, totp: Any, cred: dict[str, Any], hashes: list[bytes], **kw: Any
) -> str:
    face = await passed_face_check(client)
    return await client.authorize(
        cred["credential_id"],
        hashes,
        password=kw.get("password", "correct horse battery"),
        otp=await totp.fresh_code(),
        face_challenge_id=face,
    )


async def test_sign_hashes_exactly_those_and_only_once(client: CloudsignClient) -> None:
    totp, cred = await enrolled(client)
    docs = [os.urandom(64) for _ in range(3)]
    digests = [hashlib.sha256(d).digest() for d in docs]
    sad = await _sad(client, totp, cred, digests)
    sigs = await client.sign_hashes(cred["credential_id"], sad, digests[:2])
    key = _public_key(cred)
    for doc, sig in zip(docs, sigs, strict=False):
        key.verify(sig, doc, ec.ECDSA(hashes.SHA256()))  # DER-encoded ECDSA
    for bad in ([digests[0]], [hashlib.sha256(b"other").digest()], [digests[2], digests[2]]):
        with pytest.raises(ApiError) as err:
            await client.sign_hashes(cred["credential_id"], sad, bad)
        assert err.value.status == 400
        assert err.value.code == "invalid_sad"
    # The remaining authorised hash still signs, once.
    (last,) = await client.sign_hashes(cred["credential_id"], sad, [digests[2]])
    key.verify(last, docs[2], ec.ECDSA(hashes.SHA256()))
    documents = await client.documents()
    assert {d["document_hash"] for d in documents} == {d.hex() for d in digests}


async def test_rsa_pkcs1_and_pss(
    client: CloudsignClient, http: aiohttp.ClientSession, base_url: str
) -> None:
    totp, cred = await enrolled(client, algorithm="rsa-2048")
    digest = hashlib.sha256(b"contract").digest()
    digest2 = hashlib.sha256(b"contract 2").digest()
    sad = await _sad(client, totp, cred, [digest, digest2])
    key = _public_key(cred)
    (sig,) = await client.sign_hashes(cred["credential_id"], sad, [digest])
    key.verify(sig, digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
    body = await client.request(
        "POST",
        "/csc/v2/signatures/signHash",
        {
            "credentialID": cred["credential_id"],
            "SAD": sad,
            "hashes": [base64.b64encode(digest2).decode()],
            "hashAlgorithmOID": "2.16.840.1.101.3.4.2.1",
            "signAlgo": "1.2.840.113549.1.1.10",
        },
    )
    pss = base64.b64decode(body["signatures"][0])
    key.verify(
        pss, digest2, padding.PSS(padding.MGF1(hashes.SHA256()), 32), Prehashed(hashes.SHA256())
    )


async def test_key_use_event_per_signature(client: CloudsignClient, app: Any) -> None:
    totp, cred = await enrolled(client)
    digests = [os.urandom(32) for _ in range(5)]
    sad = await _sad(client, totp, cred, digests)
    await client.sign_hashes(cred["credential_id"], sad, digests)
    async with app[DATABASE].read() as conn:
        rows = (
            (
                await conn.execute(
                    select(events.c.data).where(
                        events.c.credential_id == cred["credential_id"],
                        events.c.event_type == "key.use",
                    )
                )
            )
            .scalars()
            .all()
        )
    assert sorted(r["document_hash"] for r in rows) == sorted(d.hex() for d in digests)


async def test_cades_detached_verifies_with_openssl(
    client: CloudsignClient, tmp_path: Path
) -> None:
    totp, cred = await enrolled(client)
    content = b"Shart No. 7: the parties agree.\n" * 100
    doc = tmp_path / "contract.txt"
    doc.write_bytes(content)
    sad = await _sad(client, totp, cred, [hashlib.sha256(content).digest()])
    # Only the hash leaves the device.
    sig_id, p7s = await client.sign_document(
        cred["credential_id"],
        sad,
        document_hash=hashlib.sha256(content).digest(),
        signature_format="cades",
        name="contract.txt",
    )
    sig = tmp_path / "contract.txt.p7s"
    sig.write_bytes(p7s)
    root = tmp_path / "root.pem"
    root.write_text(cred["chain"][-1])
    chain = tmp_path / "issuing.pem"
    chain.write_text(cred["chain"][0])
    result = openssl_cms_verify(sig, doc, root, chain)
    assert result.returncode == 0, result.stderr
    assert "Verification successful" in result.stderr
    printed = subprocess.run(
        ["openssl", "cms", "-cmsout", "-print", "-inform", "DER", "-in", str(sig)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "id-smime-aa-signingCertificateV2" in printed
    # A changed document fails.
    doc.write_bytes(content + b"x")
    tampered = openssl_cms_verify(sig, doc, root, chain)
    assert tampered.returncode != 0
    # The cabinet gives the same signature back.
    listed = {d["signature_id"]: d for d in await client.documents()}
    assert listed[sig_id]["name"] == "contract.txt"
    async with client.session.get(
        f"{client.base_url}/api/v1/me/documents/{sig_id}",
        headers={"Authorization": f"Bearer {client.access_token}"},
    ) as resp:
        assert resp.status == 200
        assert await resp.read() == p7s


async def _validate_pdf(signed: bytes, root: x509.Certificate) -> Any:
    reader = PdfFileReader(io.BytesIO(signed))
    (embedded,) = reader.embedded_signatures
    return await async_validate_pdf_signature(embedded, ValidationContext(trust_roots=[root]))


async def test_pades_validates_with_pyhanko(client: CloudsignClient) -> None:
    totp, cred = await enrolled(client)
    pdf = simple_pdf()
    sad = await _sad(client, totp, cred, [hashlib.sha256(pdf).digest()])
    _, signed = await client.sign_document(
        cred["credential_id"], sad, document=pdf, signature_format="pades", name="a.pdf"
    )
    status = await _validate_pdf(signed, _root(cred))
    assert status.intact and status.valid and status.trusted, status.pretty_print_details()


async def test_pyhanko_csc_signer_through_csc_v1(
    client: CloudsignClient, http: aiohttp.ClientSession, base_url: str
) -> None:
    """A third-party client: pyHanko's CSCSigner, with an authorisation
    manager that passes face + TOTP + wrapped password via our client."""
    totp, cred = await enrolled(client)
    session_info = CSCServiceSessionInfo(
        base_url, cred["credential_id"], oauth_token=client.access_token, api_ver="v1"
    )
    info = await fetch_certs_in_csc_credential(http, session_info)
    assert info.hash_pinning_required  # SCAL 2
    manager = CloudsignAuthorizationManager(
        session_info,
        info,
        client=client,
        password="correct horse battery",
        totp=totp,
        face_check=lambda: passed_face_check(client),
    )
    signer = CSCSigner(http, auth_manager=manager)
    out = io.BytesIO()
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

    writer = IncrementalPdfFileWriter(io.BytesIO(simple_pdf("Signed via CSC")))
    await signers.async_sign_pdf(
        writer, signers.PdfSignatureMetadata(field_name="Sig1"), signer=signer, output=out
    )
    status = await _validate_pdf(out.getvalue(), _root(cred))
    assert status.intact and status.valid and status.trusted, status.pretty_print_details()


async def test_csc_surface(client: CloudsignClient) -> None:
    _, cred = await enrolled(client)
    info = await client.request("POST", "/csc/v1/info", {})
    assert info["specs"].startswith("1.") and "signatures/signHash" in info["methods"]
    ids = await client.request("POST", "/csc/v1/credentials/list", {})
    assert ids["credentialIDs"] == [cred["credential_id"]]
    v2 = await client.request(
        "POST",
        "/csc/v2/credentials/info",
        {"credentialID": cred["credential_id"], "certificates": "chain", "certInfo": True},
    )
    assert v2["SCAL"] == "2"
    assert "1.2.840.10045.4.3.2" in v2["key"]["algo"]
    assert len(v2["cert"]["certificates"]) == 3
    assert "FACE" in v2["auth"]["expression"]
    # CSC error form, not problem+json.
    async with client.session.post(
        f"{client.base_url}/csc/v1/credentials/info",
        json={"credentialID": "nope"},
        headers={"Authorization": f"Bearer {client.access_token}"},
    ) as resp:
        body = await resp.json()
        assert resp.status == 404
        assert set(body) == {"error", "error_description"}
    async with client.session.post(f"{client.base_url}/csc/v1/credentials/list", json={}) as resp:
        assert resp.status == 401
        assert (await resp.json())["error"] == "invalid_token"
    # A plain password in PIN is refused before anything else.
    with pytest.raises(ApiError) as err:
        await client.request(
            "POST",
            "/csc/v1/credentials/authorize",
            {
                "credentialID": cred["credential_id"],
                "numSignatures": 1,
                "hash": [base64.b64encode(os.urandom(32)).decode()],
                "PIN": "correct horse battery",
                "OTP": "123456",
            },
        )
    assert err.value.status == 400 and "never the password" in err.value.body["error_description"]


async def test_owners_cannot_reach_each_other(
    client: CloudsignClient, http: aiohttp.ClientSession, base_url: str
) -> None:
    totp_a, cred_a = await enrolled(client)
    other = new_client(base_url, http)
    totp_b, cred_b = await enrolled(other)
    digest = os.urandom(32)
    sad_a = await _sad(client, totp_a, cred_a, [digest])
    _, _ = await client.sign_document(cred_a["credential_id"], sad_a, document_hash=digest)
    # B sees only B's credential and no documents of A.
    assert (await other.request("POST", "/csc/v1/credentials/list", {}))["credentialIDs"] == [
        cred_b["credential_id"]
    ]
    assert await other.documents() == []
    a_doc = (await client.documents())[0]["signature_id"]
    with pytest.raises(ApiError) as err:
        await other.request("GET", f"/api/v1/me/documents/{a_doc}")
    assert err.value.status == 404
    # B cannot authorise A's credential, nor sign with A's SAD.
    face_b = await passed_face_check(other)
    with pytest.raises(ApiError) as err:
        await other.authorize(
            cred_a["credential_id"],
            [digest],
            password="correct horse battery",
            otp=await totp_b.fresh_code(),
            face_challenge_id=face_b,
        )
    assert err.value.status == 404
    digest2 = os.urandom(32)
    sad_a2 = await _sad(client, totp_a, cred_a, [digest2])
    for cred_id in (cred_a["credential_id"], cred_b["credential_id"]):
        with pytest.raises(ApiError) as err:
            await other.sign_hashes(cred_id, sad_a2, [digest2])
        assert err.value.status in (400, 404)
    # A's SAD still works for A: B's attempts consumed nothing.
    (sig,) = await client.sign_hashes(cred_a["credential_id"], sad_a2, [digest2])
    assert sig


async def test_expired_sad_is_refused(client: CloudsignClient, app: Any) -> None:
    from datetime import UTC, datetime, timedelta

    totp, cred = await enrolled(client)
    digest = os.urandom(32)
    sad = await _sad(client, totp, cred, [digest])
    async with app[DATABASE].transaction() as conn:
        await conn.execute(
            update(sads)
            .where(sads.c.credential_id == cred["credential_id"])
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    with pytest.raises(ApiError) as err:
        await client.sign_hashes(cred["credential_id"], sad, [digest])
    assert err.value.code == "invalid_sad"
    assert not [d for d in await client.documents()]


async def test_lockout_after_repeated_failures(client: CloudsignClient, app: Any) -> None:
    totp, cred = await enrolled(client)
    digest = os.urandom(32)
    for _ in range(5):
        with pytest.raises(ApiError) as err:
            await client.authorize(
                cred["credential_id"],
                [digest],
                password="correct horse battery",
                otp="000000",
                face_challenge_id=None,
            )
        assert err.value.status == 403
    # Now even all-correct factors are refused (423), and nothing was signed.
    with pytest.raises(ApiError) as err:
        await _sad(client, totp, cred, [digest])
    assert (err.value.status, err.value.code) == (423, "locked")
    async with app[DATABASE].read() as conn:
        kinds = (
            (
                await conn.execute(
                    select(events.c.event_type).where(
                        events.c.credential_id == cred["credential_id"]
                    )
                )
            )
            .scalars()
            .all()
        )
    assert kinds.count("auth.failure") == 5
    assert kinds.count("lock") == 1
    assert "key.use" not in kinds


async def test_csc_v2_sign_doc_and_extend_transaction(
    client: CloudsignClient, tmp_path: Path
) -> None:
    totp, cred = await enrolled(client)
    pdf = simple_pdf("signDoc")
    other = os.urandom(32)
    face = await passed_face_check(client)
    wrapped = await client.wrap_password("correct horse battery", "authorize")
    auth = await client.request(
        "POST",
        "/csc/v2/credentials/authorize",
        {
            "credentialID": cred["credential_id"],
            "numSignatures": 2,
            "hashes": [
                base64.b64encode(hashlib.sha256(pdf).digest()).decode(),
                base64.b64encode(other).decode(),
            ],
            "hashAlgorithmOID": "2.16.840.1.101.3.4.2.1",
            "authData": [
                {"id": "PIN", "value": wrapped.to_pin()},
                {"id": "OTP", "value": await totp.fresh_code()},
                {"id": "FACE", "value": face},
            ],
        },
    )
    extended = await client.request(
        "POST",
        "/csc/v2/credentials/extendTransaction",
        {"credentialID": cred["credential_id"], "SAD": auth["SAD"]},
    )
    assert extended["SAD"] != auth["SAD"] and extended["expiresIn"] > 0
    # The old SAD died with the extension.
    with pytest.raises(ApiError) as err:
        await client.sign_hashes(cred["credential_id"], auth["SAD"], [other])
    assert err.value.code == "invalid_sad"
    signed = await client.request(
        "POST",
        "/csc/v2/signatures/signDoc",
        {
            "credentialID": cred["credential_id"],
            "SAD": extended["SAD"],
            "documents": [{"document": base64.b64encode(pdf).decode(), "signature_format": "P"}],
        },
    )
    out = base64.b64decode(signed["DocumentWithSignature"][0])
    status = await _validate_pdf(out, _root(cred))
    assert status.intact and status.valid and status.trusted
    (sig,) = await client.sign_hashes(cred["credential_id"], extended["SAD"], [other])
    _public_key(cred).verify(sig, other, ec.ECDSA(Prehashed(hashes.SHA256())))


async def test_auditor_reads_the_cabinet_without_names(
    client: CloudsignClient, http: aiohttp.ClientSession, base_url: str, staff: Staff
) -> None:
    totp, cred = await enrolled(client)
    digest = os.urandom(32)
    sad = await _sad(client, totp, cred, [digest])
    await client.sign_document(
        cred["credential_id"], sad, document_hash=digest, name="secret-contract.txt"
    )
    path = f"/operator/api/v1/audit/documents?owner_id={client.owner_id}"
    # Not on the public listener at all.
    async with http.get(base_url + path) as resp:
        assert resp.status == 404
    url = staff.url + path
    async with http.get(url) as resp:
        assert resp.status == 401
    async with http.get(url, headers={"Authorization": "Bearer not-the-token"}) as resp:
        assert resp.status == 401
    rows = await staff.auditor.request("GET", path)
    assert [r["document_hash"] for r in rows] == [digest.hex()]
    assert "name" not in rows[0] and "secret-contract" not in str(rows)
    # Another role is not an auditor; the owner's own token is no operator's.
    with pytest.raises(ApiError) as err:
        await staff.registration.request("GET", path)
    assert err.value.status == 403
    async with http.get(url, headers={"Authorization": f"Bearer {client.access_token}"}) as resp:
        assert resp.status == 401
