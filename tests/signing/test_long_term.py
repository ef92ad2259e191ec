"""Signatures a relying party can check years later: PAdES/CAdES with this
service's time-stamps (T) and embedded OCSP/CRL data (LT); owner revocation
after the full factors; pyHanko, fetching from this service only, accepts a
signature made before the revocation and rejects one made after it."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import os
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from asn1crypto import cms, pem, x509
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import DocumentSecurityStore, async_validate_pdf_signature
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.fetchers.aiohttp_fetchers import AIOHttpFetcherBackend

from cloudsign.appkeys import CA, SIGNING
from cloudsign.signing.cms import HsmOwnerSigner, LevelServices, pades
from device_client.client import ApiError, CloudsignClient
from hsm_bridge import HashAlgorithm, SignatureScheme
from tests.helpers import enrolled, passed_face_check
from tests.pdfs import simple_pdf
from tests.signing.test_signing import openssl_cms_verify


def _cert(text: str) -> x509.Certificate:
    return x509.Certificate.load(pem.unarmor(text.encode())[2])


async def _authorize(
    client: CloudsignClient, totp: Any, cred: dict[str, Any], hashes: list[bytes]
) -> str:
    face = await passed_face_check(client)  # first: it is the slow part
    return await client.authorize(
        cred["credential_id"],
        hashes,
        password="correct horse battery",
        otp=await totp.fresh_code(),
        face_challenge_id=face,
    )


async def test_cades_t_has_a_timestamp_openssl_accepts(
    client: CloudsignClient, tmp_path: Path
) -> None:
    totp, cred = await enrolled(client)
    content = os.urandom(4096)
    digest = hashlib.sha256(content).digest()
    sad = await _authorize(client, totp, cred, [digest])
    async with client.session.post(
        f"{client.base_url}/api/v1/me/credentials/{cred['credential_id']}/sign-document",
        json={
            "SAD": sad,
            "format": "cades",
            "level": "T",
            "document_hash": base64.b64encode(digest).decode(),
        },
        headers={"Authorization": f"Bearer {client.access_token}"},
    ) as resp:
        assert resp.status == 200, await resp.text()
        p7s = await resp.read()
    signer_info = cms.ContentInfo.load(p7s)["content"]["signer_infos"][0]
    unsigned = {a["type"].native for a in signer_info["unsigned_attrs"]}
    assert "signature_time_stamp_token" in unsigned
    (tmp_path / "doc").write_bytes(content)
    (tmp_path / "doc.p7s").write_bytes(p7s)
    (tmp_path / "root.pem").write_text(cred["chain"][-1])
    (tmp_path / "issuing.pem").write_text(cred["chain"][0])
    result = openssl_cms_verify(
        tmp_path / "doc.p7s", tmp_path / "doc", tmp_path / "root.pem", tmp_path / "issuing.pem"
    )
    assert result.returncode == 0, result.stderr


async def test_signature_before_revocation_holds_and_after_does_not(
    client: CloudsignClient, app: Any, http: aiohttp.ClientSession
) -> None:
    totp, cred = await enrolled(client)
    root, issuing = _cert(cred["chain"][-1]), _cert(cred["chain"][0])
    before_pdf, after_pdf = simple_pdf("before"), simple_pdf("after")
    sad = await _authorize(
        client,
        totp,
        cred,
        [hashlib.sha256(before_pdf).digest(), hashlib.sha256(after_pdf).digest()],
    )
    sads = app[SIGNING].sads
    auth = await sads.find(sad, owner_id=client.owner_id, credential_id=cred["credential_id"])
    async with client.session.post(
        f"{client.base_url}/api/v1/me/credentials/{cred['credential_id']}/sign-document",
        json={
            "SAD": sad,
            "format": "pades",
            "level": "LT",
            "name": "before.pdf",
            "document": base64.b64encode(before_pdf).decode(),
        },
        headers={"Authorization": f"Bearer {client.access_token}"},
    ) as resp:
        assert resp.status == 200, await resp.text()
        before = await resp.read()
    signed_second = int(time.time())

    # The owner revokes, after face + OTP + key password.
    face = await passed_face_check(client)
    wrapped = await client.wrap_password("correct horse battery", "authorize")
    # Revocation times go out in whole seconds (CRL and OCSP): a revocation
    # in the time-stamp's own second would date before it and rightly make
    # "before" look revoked. Let the clock reach the next second first.
    await asyncio.sleep(max(0.0, signed_second + 1.01 - time.time()))
    assert int(time.time()) > signed_second
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
    assert revoked["status"] == "revoked" and revoked["reason"] == "keyCompromise"

    # The service refuses to sign with the revoked certificate, SAD or not.
    with pytest.raises(ApiError) as err:
        await client.sign_document(
            cred["credential_id"], sad, document=after_pdf, signature_format="pades"
        )
    assert err.value.status == 409

    # A key used anyway after the revocation (as a thief would): time-stamped later.
    services = LevelServices(f"{client.base_url}/tsa", (root,), (issuing,))

    async def sign_anyway(digest: bytes, h: HashAlgorithm, scheme: SignatureScheme) -> bytes:
        (signature,) = await sads.sign(auth, sad, [digest], h, scheme)
        return signature

    thief = HsmOwnerSigner(
        sign_anyway, auth.credential_id, _cert(cred["certificate"]), app[CA].chain
    )
    after = await pades(thief, after_pdf, session=http, level="T", services=services)

    # Each is judged at the time its time-stamp proves, against this
    # service's OCSP/CRL (fetched now) — and "before" also from its own
    # embedded validation data alone.
    before_status = await _validate_at_timestamp(before, root, issuing, http)
    assert before_status.intact and before_status.valid
    assert before_status.trusted and not before_status.revoked, before_status.pretty_print_details()
    offline = await _validate_at_timestamp(before, root, issuing, None)
    assert offline.trusted and not offline.revoked, offline.pretty_print_details()

    after_status = await _validate_at_timestamp(after, root, issuing, http)
    assert after_status.intact and after_status.valid  # the maths is fine...
    assert after_status.revoked and not after_status.trusted  # ...the certificate was not


async def _validate_at_timestamp(
    signed: bytes,
    root: x509.Certificate,
    issuing: x509.Certificate,
    http: aiohttp.ClientSession | None,
) -> Any:
    reader = PdfFileReader(io.BytesIO(signed))
    embedded = reader.embedded_signatures[0]
    first = await async_validate_pdf_signature(
        embedded, ValidationContext(trust_roots=[root], other_certs=[issuing])
    )
    assert first.timestamp_validity is not None, "no signature time-stamp"
    kwargs: dict[str, Any] = {
        "trust_roots": [root],
        "other_certs": [issuing],
        "moment": first.timestamp_validity.timestamp,
        "revocation_mode": "hard-fail",
        "retroactive_revinfo": True,
    }
    if http is None:
        context = DocumentSecurityStore.read_dss(reader).as_validation_context(
            {**kwargs, "allow_fetching": False}
        )
    else:
        context = ValidationContext(
            **kwargs, allow_fetching=True, fetcher_backend=AIOHttpFetcherBackend(http)
        )
    return await async_validate_pdf_signature(embedded, context)
