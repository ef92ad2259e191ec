"""RFC 3161 time-stamping over real HTTP: `openssl ts -verify`, pyHanko's
HTTPTimeStamper, and rejections for bad requests, on both databases."""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from asn1crypto import algos, tsp
from pyhanko.sign.timestamps import HTTPTimeStamper

from cloudsign.appkeys import CA, STATUS
from cloudsign.ca.x509 import to_pem
from cloudsign.status.tsa import TimeStampResp
from tests.status.status_helpers import healthy, openssl_async

TS_QUERY = {"Content-Type": "application/timestamp-query"}


async def _post(http: aiohttp.ClientSession, base_url: str, body: bytes) -> TimeStampResp:
    async with http.post(f"{base_url}/tsa", data=body, headers=TS_QUERY) as r:
        assert r.status == 200
        assert r.content_type == "application/timestamp-reply"
        resp: TimeStampResp = TimeStampResp.load(await r.read())
        return resp


def _query(
    digest: bytes,
    hash_name: str = "sha256",
    *,
    nonce: int | None = None,
    cert_req: bool = True,
    policy: str | None = None,
) -> bytes:
    req: dict[str, Any] = {
        "version": "v1",
        "message_imprint": {"hash_algorithm": {"algorithm": hash_name}, "hashed_message": digest},
        "cert_req": cert_req,
    }
    if nonce is not None:
        req["nonce"] = nonce
    if policy is not None:
        req["req_policy"] = policy
    return bytes(tsp.TimeStampReq(req).dump())


def _tst_info(resp: TimeStampResp) -> tsp.TSTInfo:
    assert resp["status"]["status"].native == "granted", resp["status"].native
    content = resp["time_stamp_token"]["content"]["encap_content_info"]["content"]
    return content.parsed


async def test_openssl_verifies_tokens(
    http: aiohttp.ClientSession, base_url: str, app: Any, tmp_path: Path
) -> None:
    ca = app[CA]
    tsa_cert = app[STATUS].tsa_identity.certificate
    root = tmp_path / "root.pem"
    root.write_text(to_pem(ca.root))
    tsa_chain = tmp_path / "tsa-chain.pem"
    tsa_chain.write_text(to_pem(tsa_cert) + to_pem(ca.issuing))
    data = tmp_path / "document.txt"
    data.write_bytes(b"a document signed years ago\n")
    for hash_flag in ("-sha256", "-sha512"):
        req = tmp_path / "req.tsq"
        made = await openssl_async(
            "ts", "-query", "-data", str(data), hash_flag, "-cert", "-out", str(req)
        )
        assert made.returncode == 0, made.stderr
        async with http.post(f"{base_url}/tsa", data=req.read_bytes(), headers=TS_QUERY) as r:
            assert r.status == 200 and r.content_type == "application/timestamp-reply"
            (tmp_path / "reply.tsr").write_bytes(await r.read())
        verify = await openssl_async(
            "ts",
            "-verify",
            "-in",
            str(tmp_path / "reply.tsr"),
            "-queryfile",
            str(req),
            "-CAfile",
            str(root),
            "-untrusted",
            str(tsa_chain),
        )
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert "Verification: OK" in verify.stdout
        text = await openssl_async("ts", "-reply", "-in", str(tmp_path / "reply.tsr"), "-text")
        assert "Status: Granted." in text.stdout
        assert f"Policy OID: {app[STATUS].tsa.config.policy_oid}" in text.stdout
        assert "Accuracy: 0x01 seconds" in text.stdout or "Accuracy: 1 seconds" in text.stdout
    # The TSA certificate: one critical extendedKeyUsage, timeStamping.
    eku = next(
        e
        for e in tsa_cert["tbs_certificate"]["extensions"]
        if e["extn_id"].native == "extended_key_usage"
    )
    assert eku["critical"].native is True
    assert eku["extn_value"].native == ["time_stamping"]


async def test_nonce_cert_req_and_unique_serials(
    http: aiohttp.ClientSession, base_url: str, app: Any
) -> None:
    digest = hashlib.sha256(b"x").digest()
    serials = set()
    for _ in range(30):
        nonce = secrets.randbits(64)
        resp = await _post(http, base_url, _query(digest, nonce=nonce))
        info = _tst_info(resp)
        assert info["nonce"].native == nonce
        assert info["message_imprint"]["hashed_message"].native == digest
        serials.add(info["serial_number"].native)
        assert len(resp["time_stamp_token"]["content"]["certificates"]) >= 1
    assert len(serials) == 30
    bare = await _post(http, base_url, _query(digest, cert_req=False))
    _tst_info(bare)
    assert not bare["time_stamp_token"]["content"]["certificates"]


async def test_pyhanko_http_timestamper(base_url: str, app: Any) -> None:
    stamper = HTTPTimeStamper(f"{base_url}/tsa")
    digest = hashlib.sha256(b"pades document").digest()
    token = await stamper.async_timestamp(digest, "sha256")  # checks nonce and imprint
    info = token["content"]["encap_content_info"]["content"].parsed
    assert info["message_imprint"]["hashed_message"].native == digest
    assert info["policy"].native == app[STATUS].tsa.config.policy_oid


@pytest.mark.parametrize(
    ("body_kind", "fail_info"),
    [
        ("garbage", "bad_request"),
        ("trailing", "bad_request"),
        ("sha1", "bad_alg"),
        ("md5", "bad_alg"),
        ("short", "bad_data_format"),
        ("policy", "unaccepted_policy"),
        ("oversized", "bad_request"),
        ("empty", "bad_request"),
    ],
)
async def test_bad_requests_are_rejected(
    http: aiohttp.ClientSession, base_url: str, body_kind: str, fail_info: str
) -> None:
    sha256 = hashlib.sha256(b"doc").digest()
    body = {
        "garbage": b"\x30\x82\xff\xff garbage",
        "trailing": _query(sha256) + b"\x00\x00",
        "sha1": _query(hashlib.sha1(b"doc").digest(), "sha1"),
        "md5": _query(hashlib.md5(b"doc").digest(), "md5"),
        "short": _query(sha256[:20]),
        "policy": _query(sha256, policy="1.2.3.4"),
        "oversized": secrets.token_bytes(100_000),
        "empty": b"",
    }[body_kind]
    resp = await _post(http, base_url, body)
    assert resp["status"]["status"].native == "rejection"
    assert resp["status"]["fail_info"].native == {fail_info}
    assert resp["time_stamp_token"].native is None
    await healthy(http, base_url)


async def test_wrong_content_type_is_rejected(http: aiohttp.ClientSession, base_url: str) -> None:
    async with http.post(
        f"{base_url}/tsa",
        data=_query(hashlib.sha256(b"d").digest()),
        headers={"Content-Type": "text/plain"},
    ) as r:
        resp = TimeStampResp.load(await r.read())
    assert resp["status"]["status"].native == "rejection"
    assert algos  # asn1crypto algos import keeps the digest names registered
    await healthy(http, base_url)
