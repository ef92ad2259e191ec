"""Another organisation's service asks for a signature: registered by a
security officer, authenticated with its own credentials, told of the
outcome by a signed callback, and shown nothing that is not its own."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from cloudsign.appkeys import DATABASE, SIGNING_REQUESTS
from cloudsign.guard import Limit
from cloudsign.storage.schema import events
from device_client.client import ApiError, CloudsignClient
from tests.helpers import make_iin, new_client, passed_face_check
from tests.mobile.test_devices import PASSWORD, phone_enrolled
from tests.staff import Staff


class RelyingPartyClient:
    def __init__(self, base_url: str, http: aiohttp.ClientSession, party: dict[str, Any]) -> None:
        self.base_url = base_url
        self.http = http
        self.party = party
        token = f"{party['client_id']}:{party['client_secret']}".encode()
        self.auth = "Basic " + base64.b64encode(token).decode()

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.http.request(
            method, self.base_url + path, json=body, headers={"Authorization": self.auth}
        ) as resp:
            return resp.status, await resp.json(content_type=None)


class CallbackReceiver:
    """The relying party's own endpoint: it checks each callback's HMAC."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[dict[str, Any], str]] = asyncio.Queue()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.put_nowait((json.loads(body), request.headers["Cloudsign-Signature"]))
        self.raw = body
        return web.json_response({"ok": True})


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[CallbackReceiver, str]]:
    rx = CallbackReceiver()
    app = web.Application()
    app.router.add_post("/hooks/cloudsign", rx.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield rx, str(server.make_url("/hooks/")).rstrip("/") + "/"
    await server.close()


def _verify(callback_key: str, body: bytes, header: str) -> bool:
    fields = dict(part.split("=", 1) for part in header.split(","))
    key = base64.urlsafe_b64decode(callback_key)
    expected = hmac.new(key, fields["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields["v1"])


async def _register(staff: Staff, prefix: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"name": "eGov services"}
    if prefix is not None:
        body["callback_prefix"] = prefix
    party: dict[str, Any] = await staff.security.request(
        "POST", "/operator/api/v1/relying-parties", body
    )
    return party


async def test_a_relying_party_request_approved_on_the_phone_with_a_signed_callback(
    client: CloudsignClient,
    http: aiohttp.ClientSession,
    staff: Staff,
    server: Any,
    receiver: tuple[CallbackReceiver, str],
) -> None:
    rx, prefix = receiver
    party = await _register(staff, prefix)
    rp = RelyingPartyClient(client.base_url, http, party)
    phone, _cred, identity = await phone_enrolled(client)

    digest = hashlib.sha256(b"an application form").digest()
    status, created = await rp.call(
        "POST",
        "/api/v1/rp/signing-requests",
        {
            "iin": identity["iin"],
            "display_text": "Sign the application",
            "documents": [
                {"name": "form", "format": "cades", "hash": base64.b64encode(digest).decode()}
            ],
            "callback_url": prefix + "cloudsign",
        },
    )
    assert status == 201, created
    assert created["requester"] == "eGov services"
    request_id = created["request_id"]
    # The citizen's inbox has it, with the same code the relying party shows.
    (inbox,) = await client.inbox()
    assert inbox["request_id"] == request_id
    assert inbox["verification_code"] == created["verification_code"]

    await client.approve(
        request_id, phone, password=PASSWORD, face_challenge_id=await passed_face_check(client)
    )
    notice, header = await asyncio.wait_for(rx.received.get(), timeout=30)
    assert notice == {"request_id": request_id, "status": "approved"}
    assert _verify(party["callback_key"], rx.raw, header)
    assert not _verify(base64.urlsafe_b64encode(b"k" * 32).decode(), rx.raw, header)

    status, result = await rp.call("GET", f"/api/v1/rp/signing-requests/{request_id}")
    assert status == 200 and result["status"] == "approved"
    assert result["documents"][0]["signature"]
    async with server.app[DATABASE].read() as conn:
        kinds = [
            r[0]
            for r in await conn.execute(
                select(events.c.event_type).where(
                    events.c.data["request"].as_string() == request_id
                )
            )
        ]
    assert "request.create" in kinds and "request.decide" in kinds


async def test_a_request_without_an_iin_goes_to_whoever_scans_it_first(
    client: CloudsignClient, http: aiohttp.ClientSession, staff: Staff
) -> None:
    rp = RelyingPartyClient(client.base_url, http, await _register(staff, None))
    phone, _cred, _identity = await phone_enrolled(client)
    digest = hashlib.sha256(b"a scanned one").digest()
    _, created = await rp.call(
        "POST",
        "/api/v1/rp/signing-requests",
        {
            "display_text": "Sign here",
            "documents": [
                {"name": "h", "format": "raw", "hash": base64.b64encode(digest).decode()}
            ],
        },
    )
    request_id = created["request_id"]
    _, qr = await rp.call("GET", f"/api/v1/rp/signing-requests/{request_id}/qr")
    claimed = await client.claim_qr(qr["qr"])
    assert claimed["verification_code"] == created["verification_code"]
    # Taken: another citizen's scan of the same (still fresh) frame is refused.
    other = new_client(client.base_url, http)
    await phone_enrolled(other)
    with pytest.raises(ApiError) as e:
        await other.claim_qr(qr["qr"])
    assert e.value.status == 404
    await client.approve(
        request_id, phone, password=PASSWORD, face_challenge_id=await passed_face_check(client)
    )
    _, result = await rp.call("GET", f"/api/v1/rp/signing-requests/{request_id}")
    assert result["status"] == "approved" and result["documents"][0]["signature"]
    # Decided: the relying party cannot take it back any more; an undecided one it can.
    status, _ = await rp.call("DELETE", f"/api/v1/rp/signing-requests/{request_id}")
    assert status == 409
    _, again = await rp.call(
        "POST",
        "/api/v1/rp/signing-requests",
        {
            "display_text": "Sign here",
            "documents": [
                {"name": "h", "format": "raw", "hash": base64.b64encode(digest).decode()}
            ],
        },
    )
    status, withdrawn = await rp.call(
        "DELETE", f"/api/v1/rp/signing-requests/{again['request_id']}"
    )
    assert status == 200 and withdrawn["status"] == "withdrawn"
    # Its page has no frame to show any more.
    status, _ = await rp.call("GET", f"/api/v1/rp/signing-requests/{again['request_id']}/qr")
    assert status == 409


async def test_relying_party_credentials_and_boundaries(
    client: CloudsignClient, http: aiohttp.ClientSession, staff: Staff
) -> None:
    one = RelyingPartyClient(client.base_url, http, await _register(staff, "https://rp.example/"))
    two = RelyingPartyClient(client.base_url, http, await _register(staff, None))
    doc = {"name": "h", "format": "raw", "hash": base64.b64encode(bytes(32)).decode()}
    _, created = await one.call(
        "POST", "/api/v1/rp/signing-requests", {"display_text": "t", "documents": [doc]}
    )
    # Another relying party sees nothing of it.
    status, _ = await two.call("GET", f"/api/v1/rp/signing-requests/{created['request_id']}")
    assert status == 404
    # Wrong, missing and malformed credentials: 401, one answer.
    wrong_secret = f"{one.party['client_id']}:wrong".encode()
    headers_tried = [
        None,
        "Basic",
        "Basic !!!",
        "Bearer x",
        "Basic " + base64.b64encode(b"rp-0:nope").decode(),
        "Basic " + base64.b64encode(wrong_secret).decode(),
    ]
    for header in headers_tried:
        headers = {"Authorization": header} if header else {}
        async with http.post(
            client.base_url + "/api/v1/rp/signing-requests", json={}, headers=headers
        ) as resp:
            assert resp.status == 401, header
    # A callback outside the registered prefix.
    status, body = await one.call(
        "POST",
        "/api/v1/rp/signing-requests",
        {"display_text": "t", "documents": [doc], "callback_url": "https://evil.example/x"},
    )
    assert status == 400 and body["field"] == "callback_url"
    # An IIN with no account: the same answer as any other (no oracle).
    status, body = await one.call(
        "POST",
        "/api/v1/rp/signing-requests",
        {"display_text": "t", "documents": [doc], "iin": "900101300999"},
    )
    assert status == 201 and body["status"] == "pending"
    # Only a security officer registers relying parties, and only http(s) prefixes.
    status, _ = await staff.registration.request_status(
        "POST", "/operator/api/v1/relying-parties", {"name": "x"}
    )
    assert status == 403
    status, _ = await staff.security.request_status(
        "POST",
        "/operator/api/v1/relying-parties",
        {"name": "x", "callback_prefix": "http://rp.example/"},
    )
    assert status == 400
    # Disabled: its credentials stop working.
    await staff.security.request(
        "DELETE", f"/operator/api/v1/relying-parties/{one.party['relying_party_id']}"
    )
    status, _ = await one.call("GET", f"/api/v1/rp/signing-requests/{created['request_id']}")
    assert status == 401


async def test_no_one_floods_a_phone_with_requests(
    client: CloudsignClient,
    http: aiohttp.ClientSession,
    server: Any,
    staff: Staff,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Requests for one citizen's phone are rate limited: the citizen's own
    screen gets 429; a relying party naming the IIN gets the answer an
    unknown IIN gets, and its request reaches no phone (no oracle, no push)."""
    requests = server.app[SIGNING_REQUESTS]
    monkeypatch.setattr(
        requests,
        "limits",
        dataclasses.replace(
            requests.limits,
            requests=Limit("requests.test", 2, timedelta(hours=1), resets_on_success=False),
        ),
    )
    _phone, _cred, identity = await phone_enrolled(client)
    desktop = new_client(client.base_url, http)
    await desktop.login(identity["iin"], None, PASSWORD, device=_phone)
    doc = [{"name": "h", "format": "raw", "hash": hashlib.sha256(b"flood").digest()}]
    for _ in range(2):
        await desktop.create_signing_request(doc, "text")
    with pytest.raises(ApiError) as e:
        await desktop.create_signing_request(doc, "text")
    assert e.value.status == 429
    assert len(await client.inbox()) == 2

    rp = RelyingPartyClient(client.base_url, http, await _register(staff, None))
    body = {
        "display_text": "Sign here",
        "documents": [
            {"name": "h", "format": "raw", "hash": base64.b64encode(b"\1" * 32).decode()}
        ],
    }
    status, known = await rp.call(
        "POST", "/api/v1/rp/signing-requests", {**body, "iin": identity["iin"]}
    )
    assert status == 201, known
    status, unknown = await rp.call(
        "POST", "/api/v1/rp/signing-requests", {**body, "iin": make_iin()}
    )
    assert status == 201, unknown
    assert set(known) == set(unknown) and known["status"] == unknown["status"] == "pending"
    assert len(await client.inbox()) == 2
