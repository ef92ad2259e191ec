"""Web Push: a request for a citizen reaches their bound phone's push
subscription, encrypted for it (RFC 8291) and signed by the service's VAPID
key (RFC 8292); endpoints outside the push services are refused."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import aiohttp
import http_ece
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from multidict import CIMultiDict

from cloudsign.appkeys import PUSH
from cloudsign.errors import ValidationError
from device_client.client import ApiError, CloudsignClient
from tests.helpers import new_client
from tests.mobile.test_devices import PASSWORD, phone_enrolled


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.fixture
async def push_endpoint() -> AsyncIterator[
    tuple[asyncio.Queue[tuple[CIMultiDict[str], bytes]], str]
]:
    """A push service of the test's own: it keeps what it receives."""
    received: asyncio.Queue[tuple[CIMultiDict[str], bytes]] = asyncio.Queue()

    async def handle(request: web.Request) -> web.Response:
        received.put_nowait((CIMultiDict(request.headers), await request.read()))
        return web.Response(status=201)

    app = web.Application()
    app.router.add_post("/push/{token}", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield received, str(server.make_url("/push/")) + secrets.token_hex(8)
    await server.close()


def _verify_vapid(authorization: str, public_key_b64: str, endpoint: str) -> dict[str, Any]:
    assert authorization.startswith("vapid ")
    fields = dict(part.strip().split("=", 1) for part in authorization[6:].split(","))
    assert fields["k"] == public_key_b64
    header, payload, signature = fields["t"].split(".")
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(fields["k"]))
    raw = unb64url(signature)
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    key.verify(der, f"{header}.{payload}".encode(), ec.ECDSA(hashes.SHA256()))
    claims: dict[str, Any] = json.loads(unb64url(payload))
    origin = endpoint.split("/push/")[0]
    assert claims["aud"] == origin
    return claims


async def test_a_new_request_is_pushed_to_the_bound_phone(
    client: CloudsignClient,
    http: aiohttp.ClientSession,
    push_endpoint: tuple[asyncio.Queue[tuple[CIMultiDict[str], bytes]], str],
) -> None:
    received, endpoint = push_endpoint
    phone, _cred, identity = await phone_enrolled(client)
    (device,) = await client.devices()
    receiver = ec.generate_private_key(ec.SECP256R1())
    p256dh = receiver.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    auth = secrets.token_bytes(16)
    await client.request(
        "PUT",
        f"/api/v1/me/devices/{device['device_id']}/push",
        {"endpoint": endpoint, "keys": {"p256dh": b64url(p256dh), "auth": b64url(auth)}},
    )
    desktop = new_client(client.base_url, http)
    await desktop.login(identity["iin"], None, PASSWORD, device=phone)
    made = await desktop.create_signing_request(
        [{"name": "h", "format": "raw", "hash": bytes(range(32))}], "Sign"
    )
    headers, body = await asyncio.wait_for(received.get(), timeout=30)
    assert headers["Content-Encoding"] == "aes128gcm" and int(headers["TTL"]) > 0
    message = json.loads(http_ece.decrypt(body, private_key=receiver, auth_secret=auth))
    assert message == {
        "type": "signing-request",
        "request_id": made["request_id"],
        "requester": "cloudsign portal",
        "verification_code": made["verification_code"],
    }
    key = (await client.request("GET", "/api/v1/push/key"))["public_key"]
    claims = _verify_vapid(headers["Authorization"], key, endpoint)
    assert claims["sub"].startswith(("mailto:", "https:")) and claims["exp"] > time.time()
    # Another key cannot pass for the service's.
    with pytest.raises(InvalidSignature):
        _verify_vapid(
            headers["Authorization"].replace(key, b64url(p256dh)), b64url(p256dh), endpoint
        )


async def test_subscriptions_are_checked(client: CloudsignClient, server: Any) -> None:
    await phone_enrolled(client)
    (device,) = await client.devices()
    good_keys = {
        "p256dh": b64url(
            ec.generate_private_key(ec.SECP256R1())
            .public_key()
            .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        ),
        "auth": b64url(secrets.token_bytes(16)),
    }
    path = f"/api/v1/me/devices/{device['device_id']}/push"
    for body in (
        {"endpoint": "https://evil.example/push", "keys": good_keys},
        {"endpoint": "http://fcm.googleapis.com/fcm/send/x", "keys": good_keys},
        {"endpoint": "https://fcm.googleapis.com/x", "keys": {**good_keys, "p256dh": "AAAA"}},
        {"endpoint": "https://fcm.googleapis.com/x", "keys": {**good_keys, "auth": "AA"}},
        {"endpoint": "https://fcm.googleapis.com/x"},
    ):
        with pytest.raises(ApiError) as e:
            await client.request("PUT", path, body)
        assert e.value.status == 400, body
    other = "00000000-0000-4000-8000-000000000000"
    with pytest.raises(ApiError) as e:
        await client.request(
            "PUT",
            f"/api/v1/me/devices/{other}/push",
            {"endpoint": "https://fcm.googleapis.com/fcm/send/x", "keys": good_keys},
        )
    assert e.value.status == 404
    # A browser vendor's push service is accepted; loopback only when configured.
    await client.request(
        "PUT", path, {"endpoint": "https://fcm.googleapis.com/fcm/send/x", "keys": good_keys}
    )
    push = server.app[PUSH]
    strict = replace(push.settings, push_allow_loopback=False)
    push_strict = type(push)(push.db, push.hasher, push.http, strict, clock=push.clock)
    with pytest.raises(ValidationError):
        push_strict.check_endpoint("http://127.0.0.1:9/push/x")
    assert push_strict.check_endpoint("https://updates.push.services.mozilla.com/wpush/v2/x")
