"""OCSP responder over real HTTP, checked with `openssl ocsp`, on both databases."""

from __future__ import annotations

import base64
import re
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from asn1crypto import ocsp

from cloudsign.appkeys import CA, STATUS
from device_client.client import CloudsignClient
from tests.helpers import enrolled, passed_face_check
from tests.status.status_helpers import (
    cert_id,
    chain_files,
    cli,
    eventually,
    healthy,
    ocsp_request,
    openssl_ocsp,
    operator_revoke,
    post_ocsp,
)


def _single(resp: ocsp.OCSPResponse) -> ocsp.SingleResponse:
    assert resp["response_status"].native == "successful"
    return resp.basic_ocsp_response["tbs_response_data"]["responses"][0]


async def test_openssl_good_then_revoked_by_operator(
    client: CloudsignClient, http: aiohttp.ClientSession, base_url: str, tmp_path: Path
) -> None:
    _, cred = await enrolled(client)
    files = chain_files(tmp_path, cred)
    out = await openssl_ocsp(files, base_url)
    assert "Response verify OK" in out, out
    assert f"{files.leaf}: good" in out, out
    assert "WARNING: no nonce" not in out and "nonce verify error" not in out.lower(), out

    status, body = await operator_revoke(http, base_url, files.serial, "key-compromise")
    assert status == 201, body
    assert body["reason"] == "keyCompromise"
    # At once: the very next query, with a nonce, and the next one without.
    for extra in ((), ("-no_nonce",)):
        out = await openssl_ocsp(files, base_url, *extra)
        assert "Response verify OK" in out, out
        assert f"{files.leaf}: revoked" in out, out
        assert "Reason: keyCompromise" in out, out
        assert re.search(r"Revocation Time: \w{3} +\d+ \d\d:\d\d:\d\d \d{4} GMT", out), out


async def test_revoked_after_owner_deletes_key(
    client: CloudsignClient, base_url: str, tmp_path: Path
) -> None:
    totp, cred = await enrolled(client)
    files = chain_files(tmp_path, cred)
    # Warm the cache with a pre-signed good answer: deletion must evict it.
    assert f"{files.leaf}: good" in await openssl_ocsp(files, base_url, "-no_nonce")
    face = await passed_face_check(client)
    await client.delete_credential(
        cred["credential_id"],
        password="correct horse battery",
        otp=await totp.fresh_code(),
        face_challenge_id=face,
    )
    out = await eventually(
        lambda: openssl_ocsp(files, base_url, "-no_nonce"),
        lambda o: f"{files.leaf}: revoked" in o,
        within=5,
    )
    assert f"{files.leaf}: revoked" in out, out
    assert "Reason: cessationOfOperation" in out, out
    assert "Response verify OK" in out, out


async def test_revoked_by_cli(
    client: CloudsignClient,
    http: aiohttp.ClientSession,
    base_url: str,
    settings: Any,
    tmp_path: Path,
) -> None:
    _, cred = await enrolled(client)
    files = chain_files(tmp_path, cred)
    assert f"{files.leaf}: good" in await openssl_ocsp(files, base_url, "-no_nonce")
    done = await cli(
        settings,
        "revoke",
        files.serial.upper(),
        "--reason",
        "court-decision",
        "--reference",
        "case 2-1234/2026",
        "--operator",
        "bob",
    )
    assert done.returncode == 0, done.stderr
    assert '"reason": "privilegeWithdrawn"' in done.stdout
    out = await eventually(
        lambda: openssl_ocsp(files, base_url, "-no_nonce"),
        lambda o: f"{files.leaf}: revoked" in o,
        within=5,
    )
    # OpenSSL's reason table stops at removeFromCRL (8): it prints privilegeWithdrawn
    # (9) as "(UNKNOWN)"; the code itself is checked on the parsed response.
    assert "Reason: " in out, out
    resp = await post_ocsp(
        http, base_url, ocsp_request(cert_id(files.cert.serial_number, files.issuer))
    )
    reason = _single(resp)["cert_status"].chosen["revocation_reason"].native
    assert reason == "privilege_withdrawn"
    again = await cli(settings, "revoke", files.serial, "--reason", "key-compromise")
    assert again.returncode == 2 and "already revoked" in again.stderr


async def test_get_form_nonce_and_cache(
    client: CloudsignClient, http: aiohttp.ClientSession, base_url: str, app: Any, tmp_path: Path
) -> None:
    _, cred = await enrolled(client)
    files = chain_files(tmp_path, cred)
    cid = cert_id(files.cert.serial_number, files.issuer, "sha256")
    der = ocsp_request(cid)
    url = f"{base_url}/pki/ocsp/{quote(base64.b64encode(der).decode(), safe='')}"
    async with http.get(url) as r:
        assert r.status == 200 and r.content_type == "application/ocsp-response"
        first = await r.read()
    async with http.get(url) as r:
        second = await r.read()
    assert first == second  # pre-signed and cached
    resp = ocsp.OCSPResponse.load(first)
    single = _single(resp)
    assert single["cert_status"].name == "good"
    assert single["cert_id"].dump() == cid.dump()
    data = resp.basic_ocsp_response["tbs_response_data"]
    assert data["responder_id"].name == "by_key"
    ocsp_cert = app[STATUS].ocsp_identity.certificate
    certs = resp.basic_ocsp_response["certs"]
    assert certs[0].dump() == ocsp_cert.dump()
    assert "ocsp_signing" in ocsp_cert.extended_key_usage_value.native
    assert ocsp_cert.ocsp_no_check_value is not None
    assert (single["next_update"].native - single["this_update"].native).total_seconds() == 600

    nonce = secrets.token_bytes(16)
    with_nonce = await post_ocsp(http, base_url, ocsp_request(cid, nonce=nonce))
    assert with_nonce.nonce_value.native == nonce

    status, _ = await operator_revoke(http, base_url, files.serial, "affiliation-changed")
    assert status == 201
    async with http.get(url) as r:
        after = ocsp.OCSPResponse.load(await r.read())
    single = _single(after)
    assert single["cert_status"].name == "revoked"
    assert single["cert_status"].chosen["revocation_reason"].native == "affiliation_changed"


async def test_unknown_and_other_issuer(
    http: aiohttp.ClientSession, base_url: str, app: Any
) -> None:
    ca = app[CA]
    unknown = await post_ocsp(
        http, base_url, ocsp_request(cert_id(secrets.randbits(100) + 1, ca.issuing))
    )
    assert _single(unknown)["cert_status"].name == "unknown"
    # The issuing CA's own certificate is the root's to answer for.
    foreign = await post_ocsp(
        http, base_url, ocsp_request(cert_id(ca.issuing.serial_number, ca.root))
    )
    assert foreign["response_status"].native == "unauthorized"
    mixed = await post_ocsp(
        http,
        base_url,
        ocsp_request(cert_id(ca.issuing.serial_number, ca.root), cert_id(5, ca.issuing)),
    )
    answers = mixed.basic_ocsp_response["tbs_response_data"]["responses"]
    assert [a["cert_status"].name for a in answers] == ["unknown", "unknown"]
    # The responder's own certificate is in the registry: good.
    ocsp_cert = app[STATUS].ocsp_identity.certificate
    own = await post_ocsp(
        http, base_url, ocsp_request(cert_id(ocsp_cert.serial_number, ca.issuing))
    )
    assert _single(own)["cert_status"].name == "good"


async def test_malformed_and_oversized_requests(
    http: aiohttp.ClientSession, base_url: str, app: Any
) -> None:
    ca = app[CA]
    good_id = cert_id(7, ca.issuing)
    bad_bodies = [
        b"",
        b"\x30\x03\x02\x01",  # truncated
        b"not der at all" * 10,
        ocsp_request(good_id) + b"\x00",  # trailing garbage
        bytes(ocsp.OCSPRequest({"tbs_request": {"request_list": []}}).dump()),
        ocsp_request(good_id, nonce=secrets.token_bytes(64)),  # RFC 8954: at most 32
        ocsp_request(*[good_id] * 40),  # too many certificates
        secrets.token_bytes(64 * 1024),  # oversized
    ]
    for body in bad_bodies:
        resp = await post_ocsp(http, base_url, body)
        assert resp["response_status"].native == "malformed_request", body[:20]
        await healthy(http, base_url)
    async with http.post(
        f"{base_url}/pki/ocsp", data=ocsp_request(good_id), headers={"Content-Type": "text/plain"}
    ) as r:
        assert ocsp.OCSPResponse.load(await r.read())["response_status"].native == (
            "malformed_request"
        )
    for path in ("%%%", "AAAA", quote(base64.b64encode(b"\x30" * 50).decode(), safe="")):
        async with http.get(f"{base_url}/pki/ocsp/{path}") as r:
            assert r.status == 200
            body = await r.read()
            assert ocsp.OCSPResponse.load(body)["response_status"].native == "malformed_request"
        await healthy(http, base_url)
    # A nonce that is not an OCTET STRING is malformed too.
    nonce = secrets.token_bytes(16)
    raw = ocsp_request(good_id, nonce=nonce).replace(b"\x04\x10" + nonce, b"\x02\x10" + nonce)
    resp = await post_ocsp(http, base_url, raw)
    assert resp["response_status"].native == "malformed_request"
    await healthy(http, base_url)
