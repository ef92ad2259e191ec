"""Behind a TLS-terminating load balancer: forwarded headers are believed
only from configured proxies, the client is the right-most untrusted hop,
the portal's Origin check sees https, and HSTS goes out with an https public
URL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from cloudsign.errors import ConfigurationError
from cloudsign.settings import Settings, parse_networks
from cloudsign.web.auth import check_origin
from cloudsign.web.client import client_address, client_address_middleware
from cloudsign.web.problems import problem_middleware
from cloudsign.web.proxies import HSTS, forwarded_middleware, install_hsts


async def _seen(request: web.Request) -> web.Response:
    check_origin(request)
    return web.json_response(
        {"client": client_address(), "scheme": request.scheme, "host": request.host}
    )


async def _client(trusted: str, public_url: str) -> TestClient:
    app = web.Application(
        middlewares=[
            forwarded_middleware(parse_networks(trusted)),
            client_address_middleware,
            problem_middleware,
        ]
    )
    app.router.add_post("/seen", _seen)
    install_hsts(app, public_url)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return client


@pytest.fixture
async def behind_proxy() -> AsyncIterator[TestClient]:
    client = await _client("127.0.0.1, 10.0.0.0/8", "https://sign.example.kz")
    yield client
    await client.close()


async def test_a_trusted_proxy_gives_client_scheme_and_host(behind_proxy: TestClient) -> None:
    r = await behind_proxy.post(
        "/seen",
        headers={
            "X-Forwarded-For": "203.0.113.7",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "sign.example.kz",
            "Origin": "https://sign.example.kz",
        },
    )
    assert r.status == 200, await r.text()
    assert await r.json() == {
        "client": "203.0.113.7",
        "scheme": "https",
        "host": "sign.example.kz",
    }
    assert r.headers["Strict-Transport-Security"] == HSTS


async def test_the_client_cannot_choose_its_address(behind_proxy: TestClient) -> None:
    # The client sent "1.2.3.4"; the outer proxy (10.1.1.1, trusted) saw
    # 198.51.100.9 and the inner one appended the outer one.
    r = await behind_proxy.post(
        "/seen", headers={"X-Forwarded-For": "1.2.3.4, 198.51.100.9, 10.1.1.1"}
    )
    assert (await r.json())["client"] == "198.51.100.9"
    # Garbage to the left of the first untrusted hop is never read.
    r = await behind_proxy.post("/seen", headers={"X-Forwarded-For": "not-an-ip, 198.51.100.9"})
    assert r.status == 200 and (await r.json())["client"] == "198.51.100.9"


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Forwarded-For": "10.0.0.1, garbage"},
        {"X-Forwarded-Proto": "gopher"},
        {"X-Forwarded-Host": "evil.example/path"},
        {"X-Forwarded-Host": "a" * 300},
    ],
)
async def test_malformed_forwarding_is_a_clear_400_and_the_server_goes_on(
    behind_proxy: TestClient, headers: dict[str, str]
) -> None:
    r = await behind_proxy.post("/seen", headers=headers)
    assert r.status == 400
    assert r.content_type == "application/problem+json"
    assert (await r.json())["code"] == "bad_forwarding"
    r = await behind_proxy.post("/seen")
    assert r.status == 200


async def test_headers_from_anyone_else_are_ignored() -> None:
    client = await _client("10.0.0.0/8", "http://127.0.0.1:8080")
    try:
        r = await client.post(
            "/seen", headers={"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}
        )
        body = await r.json()
        assert body["client"] == "127.0.0.1" and body["scheme"] == "http"
        assert "Strict-Transport-Security" not in r.headers
        # So a forged https Origin is still another origin.
        r = await client.post(
            "/seen",
            headers={
                "X-Forwarded-Proto": "https",
                "X-Forwarded-Host": "sign.example.kz",
                "Origin": "https://sign.example.kz",
            },
        )
        assert r.status == 403, await r.text()
    finally:
        await client.close()


def test_trusted_proxies_must_be_addresses_or_networks() -> None:
    with pytest.raises(ConfigurationError, match="trusted_proxies"):
        Settings(trusted_proxies="10.0.0.0/8, proxy.example")
    assert (
        len(Settings(trusted_proxies="10.0.0.1, ::1, 192.168.0.0/16").trusted_proxy_networks) == 3
    )
