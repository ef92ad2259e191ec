"""Regression tests, one per cause of the 500s and the crash found from
outside (issue 10), over real HTTP on both databases. The route fuzz covers
the classes; these pin each cause down by name."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sys
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from cloudsign.interpreter import SERVICE_RECURSION_LIMIT
from cloudsign.web.inputs import PREVIEW_CHARS
from cloudsign.web.problems import problem_middleware
from device_client.client import ApiError, CloudsignClient
from tests.helpers import activated, enrolled, passed_face_check, person

UNAUTHENTICATED_JSON_ROUTES = (
    "/api/v1/activations",
    "/api/v1/sessions/challenge",
    "/api/v1/sessions",
    "/api/v1/proofings/remote",
    "/portal/session/activate",
    "/portal/session/challenge",
    "/portal/session/login",
)
NON_ASCII_CODES = ("١٢٣٤٥٦", "²²²²²²", "１２３４５６")


async def _post(
    http: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: dict[str, str] | None = None,
    ctype: str = "application/json",
) -> tuple[int, str, bytes]:
    async with http.post(url, data=body, headers={"Content-Type": ctype, **(headers or {})}) as r:
        return r.status, r.content_type, await r.read()


async def _healthy(http: aiohttp.ClientSession, base_url: str) -> None:
    async with http.get(f"{base_url}/healthz") as r:
        assert r.status == 200


async def _raw(base_url: str, request: bytes) -> bytes:
    """Send bytes no HTTP client library would, return the status line."""
    host, port = base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        return await reader.readline()
    finally:
        writer.close()


def _auth(client: CloudsignClient) -> dict[str, str]:
    return {"Authorization": f"Bearer {client.access_token}"}


async def test_the_service_runs_with_its_own_recursion_limit(server: TestServer) -> None:
    # The server fixture has started every cleanup context, the anchoring
    # code (web3, py_ecc) included.
    assert sys.getrecursionlimit() == SERVICE_RECURSION_LIMIT


@pytest.mark.parametrize("route", UNAUTHENTICATED_JSON_ROUTES)
@pytest.mark.parametrize(
    "body",
    [b"[" * 70_000 + b"]" * 70_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000],
    ids=["arrays", "objects"],
)
async def test_deep_nesting_is_a_400(
    http: aiohttp.ClientSession, base_url: str, route: str, body: bytes
) -> None:
    status, ctype, answer = await _post(http, base_url + route, body)
    assert status == 400 and ctype == "application/problem+json"
    assert len(answer) < 1000
    await _healthy(http, base_url)


async def test_integer_of_thousands_of_digits_is_a_400(
    http: aiohttp.ClientSession, base_url: str, client: CloudsignClient
) -> None:
    await activated(client)
    huge = b"9" * 4400
    for route, headers in (
        ("/api/v1/sessions/challenge", {}),
        ("/api/v1/sessions", {}),
        ("/api/v1/me/transport-keys", _auth(client)),
        ("/csc/v2/credentials/authorize", _auth(client)),
    ):
        status, _, answer = await _post(
            http,
            base_url + route,
            b'{"iin": ' + huge + b', "numSignatures": ' + huge + b"}",
            headers,
        )
        assert status == 400, (route, answer)
    await _healthy(http, base_url)


async def test_otp_in_non_ascii_digits_is_refused_everywhere(
    http: aiohttp.ClientSession, base_url: str, client: CloudsignClient
) -> None:
    identity = person()
    _, cred = await enrolled(client, identity=identity)
    auth = _auth(client)
    for code in NON_ASCII_CODES:
        assert code.isdigit()  # what made the old check pass
        login = json.dumps({"iin": identity["iin"], "otp": code, "password_key": {}}).encode()
        for route in ("/api/v1/sessions", "/portal/session/login"):
            status, _, _ = await _post(http, base_url + route, login)
            assert status == 400
        otp = json.dumps({"otp": code}).encode()
        status, _, _ = await _post(http, f"{base_url}/api/v1/me/totp/confirm", otp, auth)
        assert status == 400
        for url in (
            f"{base_url}/api/v1/me",
            f"{base_url}/api/v1/me/credentials/{cred['credential_id']}",
        ):
            async with http.delete(
                url, data=otp, headers={**auth, "Content-Type": "application/json"}
            ) as r:
                assert r.status == 400
        replace = json.dumps({"otp": code, "images": []}).encode()
        async with http.put(
            f"{base_url}/api/v1/me/face",
            data=replace,
            headers={**auth, "Content-Type": "application/json"},
        ) as r:
            assert r.status == 400
    # The account is untouched: the credential is still there and usable.
    assert [c["status"] for c in await client.credentials()] == ["active"]
    await _healthy(http, base_url)


async def test_lone_surrogates_are_refused(
    http: aiohttp.ClientSession, base_url: str, client: CloudsignClient
) -> None:
    await activated(client)
    surrogate = b'"\\ud800"'
    cases = [
        ("/api/v1/sessions/challenge", b'{"iin": ' + surrogate + b"}", {}),
        ("/api/v1/activations", b'{"code": ' + surrogate + b"}", {}),
        ("/csc/v2/signatures/signHash", b'{"SAD": ' + surrogate + b"}", _auth(client)),
        ("/csc/v2/credentials/info", b'{"credentialID": ' + surrogate + b"}", _auth(client)),
    ]
    for route, body, headers in cases:
        status, _, answer = await _post(http, base_url + route, body, headers)
        assert status == 400, (route, answer)
    # In a header (raw bytes that decode to surrogates) and in a path.
    status_line = await _raw(
        base_url, b"GET /api/v1/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\n\r\n"
    )
    assert status_line.startswith(b"HTTP/1.1 401"), status_line
    async with http.get(f"{base_url}/log/checkpoints/%ED%A0%80") as r:
        assert r.status == 400
    await _healthy(http, base_url)


async def test_hash_algorithm_of_the_wrong_type_is_a_400(
    http: aiohttp.ClientSession, base_url: str, client: CloudsignClient
) -> None:
    _, cred = await enrolled(client)
    face = await passed_face_check(client)
    for bad in (["sha256"], {"name": "sha256"}, 256, "md5"):
        body = json.dumps(
            {
                "hashes": ["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="],
                "hash_algorithm": bad,
                "face_challenge_id": face,
            }
        ).encode()
        for action in ("authorize", "sign-hashes"):
            url = f"{base_url}/api/v1/me/credentials/{cred['credential_id']}/{action}"
            status, _, answer = await _post(http, url, body, _auth(client))
            assert status == 400, answer
            assert json.loads(answer)["field"] == "hash_algorithm"
    await _healthy(http, base_url)


@pytest.mark.parametrize(
    "query",
    [
        "proof?index=%C2%B2",
        "consistency?first=%C2%B2&second=1",
        "proof?index=%D9%A1%D9%A2",
        "consistency?first=1&second=" + "9" * 40,
        "proof?index=-1",
    ],
)
async def test_log_indexes_take_ascii_digits_only(
    http: aiohttp.ClientSession, base_url: str, query: str
) -> None:
    async with http.get(f"{base_url}/log/{query}") as r:
        assert r.status == 400
        assert r.content_type == "application/problem+json"
    await _healthy(http, base_url)


@pytest.mark.parametrize(
    ("ctype", "body"),
    [
        ("multipart/form-data", b"--x\r\n\r\nno boundary\r\n--x--\r\n"),
        ("multipart/form-data; boundary=b", b"garbage"),
        ("multipart/form-data; boundary=b", b"--b\r\nContent-Disposition\r\n\r\nx\r\n--b--\r\n"),
        (
            "multipart/form-data; boundary=b",
            b'--b\r\nContent-Disposition: form-data; name="frame"\r\n'
            b"Content-Transfer-Encoding: base64\r\n\r\n@@@@\r\n--b--\r\n",
        ),
    ],
    ids=["no boundary", "garbage", "bad part headers", "bad base64 part"],
)
async def test_malformed_multipart_burst_is_a_400(
    http: aiohttp.ClientSession, base_url: str, client: CloudsignClient, ctype: str, body: bytes
) -> None:
    await enrolled(client)
    challenge = await client.face_challenge()
    url = f"{base_url}/api/v1/me/face-challenges/{challenge['challenge_id']}/burst"
    status, pctype, answer = await _post(http, url, body, _auth(client), ctype)
    assert status == 400, answer
    assert pctype == "application/problem+json"
    await _healthy(http, base_url)


async def test_overlong_static_path_is_a_404(http: aiohttp.ClientSession, base_url: str) -> None:
    async with http.get(f"{base_url}/portal/static/{'a' * 5000}") as r:
        assert r.status == 404
    async with http.get(f"{base_url}/portal/static/{'a/' * 2000}x.js") as r:
        assert r.status == 404
    await _healthy(http, base_url)


async def test_errors_quote_only_a_short_prefix_of_the_input(
    http: aiohttp.ClientSession, base_url: str, client: CloudsignClient
) -> None:
    await activated(client)
    big = "p" * 900_000
    status, _, answer = await _post(
        http,
        f"{base_url}/api/v1/me/transport-keys",
        json.dumps({"purpose": big}).encode(),
        _auth(client),
    )
    assert status == 400
    assert len(answer) < 1000 and "p" * (PREVIEW_CHARS + 1) not in answer.decode()
    status, _, answer = await _post(
        http, f"{base_url}/api/v1/sessions/challenge", json.dumps({big[:50_000]: 1}).encode()
    )
    assert status == 400 and len(answer) < 1000


async def test_client_garbage_logs_one_line_and_no_traceback(
    base_url: str, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for raw in (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
        b"GET /\x00\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /api/v1/sessions/challenge HTTP/1.1\r\nHost: x\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
    ):
        status_line = await _raw(base_url, raw)
        assert status_line.split(b" ")[1].startswith(b"4"), status_line
    status, _, _ = await _post(http, f"{base_url}/api/v1/sessions/challenge", b"[" * 70_000)
    assert status == 400
    await _healthy(http, base_url)
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "aiohttp" in r.name]
    assert all("[[[[" not in r.getMessage() for r in caplog.records)


async def test_a_genuine_500_is_logged_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("a bug")

    app = web.Application(middlewares=[problem_middleware])
    app.router.add_get("/broken", broken)
    async with TestClient(TestServer(app)) as tc:
        resp = await tc.get("/broken")
        assert resp.status == 500
        body: dict[str, Any] = await resp.json(content_type=None)
    assert body["code"] == "internal" and "a bug" not in json.dumps(body)
    assert [r for r in caplog.records if r.exc_info and r.levelno == logging.ERROR]


def test_access_log_escapes_what_the_client_controls(caplog: pytest.LogCaptureFixture) -> None:
    from aiohttp.test_utils import make_mocked_request

    from cloudsign.web.logs import SafeAccessLogger, access_logger

    request = make_mocked_request(
        "GET",
        "/portal/static/\x1b[31mred%0a?otp=123456",
        headers={"User-Agent": "evil\x1b]0;title\x07" + "u" * 500},
    )
    caplog.set_level(logging.INFO, logger=access_logger().name)
    SafeAccessLogger(access_logger(), "").log(request, web.Response(status=404), 0.001)
    (line,) = [r.getMessage() for r in caplog.records if r.name == access_logger().name]
    assert "\x1b" not in line and "\x07" not in line and "\n" not in line
    assert "otp=123456" not in line  # no query string
    assert "\\x1b[31mred" in line and len(line) < 400


async def test_hostile_pdfs_are_a_400_and_do_not_spend_the_sad(client: CloudsignClient) -> None:
    from tests.pdfs import simple_pdf

    totp, cred = await enrolled(client)
    real = simple_pdf("hostile")
    documents = [
        b"%PDF-1.7\n1 0 obj\n" + b"[" * 60_000 + b"\nendobj\n%%EOF\n",
        b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 9 0 R >> endobj\n"
        b"trailer << /Root 1 0 R /Size 99999999999999999999 >>\n%%EOF\n",
        b"not a PDF at all",
        real[: len(real) // 2],
        real.replace(b"/Pages", b"/Pagez"),
    ]
    digests = [hashlib.sha256(d).digest() for d in documents]
    sad = await client.authorize(
        cred["credential_id"],
        digests,
        password="correct horse battery",
        face_challenge_id=await passed_face_check(client),
        otp=await totp.fresh_code(),
    )
    for document in documents:
        with pytest.raises(ApiError) as err:
            await client.sign_document(
                cred["credential_id"], sad, document=document, signature_format="pades"
            )
        assert err.value.status == 400, err.value.body
        assert err.value.body["field"] == "document"
    # Nothing was signed, so the SAD still covers each hash once.
    _, signature = await client.sign_document(
        cred["credential_id"], sad, document_hash=digests[0], signature_format="cades"
    )
    assert signature[:1] == b"\x30"
