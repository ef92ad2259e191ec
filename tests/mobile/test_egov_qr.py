"""eGov QR signing end to end: an e-government service (tests/egov_service.py)
shows a `mobileSign:` link, the citizen's phone hands it to cloudsign, which
fetches API No. 1 and No. 2 itself, the phone approves the signing request
with face + password + device, and cloudsign PUTs the CMS signatures back,
where the service verifies them with `openssl cms -verify`. And every
refusal: an unregistered host, http, garbage and oversized answers, an
expired procedure, a replayed link, another citizen, a decline."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from cloudsign.appkeys import DATABASE, EGOV_QR
from cloudsign.storage.schema import events
from device_client.client import ApiError, CloudsignClient
from mobile_api.tables import egov_procedures, signing_requests
from tests.egov_service import EgovService, running_service
from tests.helpers import new_client, passed_face_check
from tests.mobile.test_devices import PASSWORD, phone_enrolled
from tests.pdfs import simple_pdf
from tests.staff import Staff

WAIT = 60


@pytest.fixture
async def egov(staff: Staff) -> AsyncIterator[EgovService]:
    """The service, registered by a security officer as a relying party
    with its URL prefix."""
    async for service in running_service():
        party = await staff.security.request(
            "POST",
            "/operator/api/v1/relying-parties",
            {"name": "Test agency (eGov)", "egov_prefix": service.prefix},
        )
        assert party["egov_prefix"] == service.prefix
        yield service


async def _procedure(server: Any, request_id: str) -> dict[str, Any]:
    async with server.app[DATABASE].read() as conn:
        row = (
            (
                await conn.execute(
                    select(egov_procedures).where(egov_procedures.c.request_id == request_id)
                )
            )
            .mappings()
            .one()
        )
    return dict(row)


async def _until(predicate: Any, what: str) -> None:
    for _ in range(WAIT * 20):
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def _key_uses(server: Any, owner_id: str | None) -> int:
    async with server.app[DATABASE].read() as conn:
        rows = await conn.execute(
            select(events.c.seq).where(
                events.c.owner_id == owner_id, events.c.event_type == "key.use"
            )
        )
        return len(list(rows))


async def test_an_egov_procedure_signed_on_the_phone_and_sent_back(
    client: CloudsignClient, server: Any, egov: EgovService
) -> None:
    phone, cred, _identity = await phone_enrolled(client)
    egov.trust(cred["chain"])
    note = "Прошу выдать справку".encode()
    pdf = simple_pdf("Application 12")
    link, proc = egov.new(
        [("Заявление.txt", note, "text/plain"), ("application.pdf", pdf, "application/pdf")]
    )

    req = await client.egov_scan(link)
    request_id = req["request_id"]
    assert req["status"] == "pending"
    assert req["requester"] == "Test agency (eGov)"
    assert req["display_text"] == "Тестовое ведомство: Заявление на получение справки"
    assert [d["name"] for d in req["documents"]] == ["Заявление.txt", "application.pdf"]
    assert [d["format"] for d in req["documents"]] == ["cades", "cades"]
    assert proc.api1_hits == 1 and proc.api2_hits == 1
    # The phone sees it like any request: its inbox, the documents it checks.
    assert [r["request_id"] for r in await client.inbox()] == [request_id]
    details = await client.request_details(request_id)
    assert details["verification_code"] == req["verification_code"]

    approved = await client.approve(
        request_id, phone, password=PASSWORD, face_challenge_id=await passed_face_check(client)
    )
    assert approved["status"] == "approved"
    await asyncio.wait_for(proc.signed.wait(), timeout=WAIT)
    assert proc.errors == [] and proc.puts == 1
    assert proc.verified == {1: note, 2: pdf}
    sent = proc.received[0]
    assert sent["signMethod"] == "CMS_SIGN_ONLY" and sent["version"] == 1
    assert [d["nameRu"] for d in sent["documentsToSign"]] == ["Заявление.txt", "application.pdf"]

    async def recorded() -> bool:
        return (await _procedure(server, request_id))["status"] == "sent"

    await _until(recorded, "the delivery to be recorded")
    row = await _procedure(server, request_id)
    assert row["attempts"] == 1 and row["sign_method"] == "CMS_SIGN_ONLY"
    # The Token is not kept in the clear.
    assert proc.token.encode() not in bytes(row["auth_token"])
    assert (await client.request_details(request_id))["callback_status"] == "sent"
    async with server.app[DATABASE].read() as conn:
        decided = [
            r[0]
            for r in await conn.execute(
                select(events.c.data)
                .where(
                    events.c.event_type == "request.decide",
                    events.c.data["request"].as_string() == request_id,
                )
                .order_by(events.c.seq)
            )
        ]
    assert {"decision": "approved"}.items() <= decided[0].items()
    assert decided[1]["egov_delivery"] == "sent"
    assert await _key_uses(server, client.owner_id) == 2

    # The same link again: used once, refused, nothing fetched.
    with pytest.raises(ApiError) as e:
        await client.egov_scan(link)
    assert e.value.status == 409
    assert proc.api1_hits == 1


async def test_cms_with_data_attached_and_delivered_after_a_failed_put(
    client: CloudsignClient, server: Any, egov: EgovService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server.app[EGOV_QR], "retry_delays", (0.05,))
    phone, cred, _identity = await phone_enrolled(client)
    egov.trust(cred["chain"])
    content = b"<form>attached</form>"
    link, proc = egov.new([("form.xml", content, "text/xml")], "CMS_WITH_DATA", auth_type="None")
    proc.failing_puts = 1
    req = await client.egov_scan(link)
    await client.approve(
        req["request_id"],
        phone,
        password=PASSWORD,
        face_challenge_id=await passed_face_check(client),
    )
    await asyncio.wait_for(proc.signed.wait(), timeout=WAIT)
    # The CMS carries the content; openssl's output of it is the document.
    assert proc.verified == {1: content} and proc.puts == 2

    async def recorded() -> bool:
        return (await _procedure(server, req["request_id"]))["status"] == "sent"

    await _until(recorded, "the delivery to be recorded")
    assert (await _procedure(server, req["request_id"]))["attempts"] == 2


async def test_refused_links_and_answers_give_no_request(
    client: CloudsignClient, server: Any, egov: EgovService, monkeypatch: pytest.MonkeyPatch
) -> None:
    await phone_enrolled(client)
    doc = [("a.txt", b"a", "text/plain")]

    async def refused(link: str) -> ApiError:
        with pytest.raises(ApiError) as e:
            await client.egov_scan(link)
        return e.value

    port_host = egov.base_url.split("//", 1)[1]
    # Not a link; not https; a host (or a path on a registered host) that no
    # security officer registered; dot segments out of the prefix.
    for bad in ("", "mobileSign:", "hello", "mobileSign:ftp://x/egov/api1/1"):
        assert (await refused(bad)).status == 400, bad
    assert (await refused("mobileSign:http://egov.example/egov/api1/1")).status == 400
    assert (await refused("mobileSign:https://other.example/egov/api1/1")).status == 403
    assert (await refused(f"mobileSign:http://{port_host}/other/api1/1")).status == 403
    assert (await refused(f"mobileSign:http://{port_host}/egov/../admin")).status == 400
    assert (await refused(f"mobileSign:http://{port_host}/egov/%2e%2e/admin")).status == 400

    # Garbage, a wrong type, a wrong content type, an oversized answer.
    answers = [
        (b"not json", "application/json"),
        (b'{"signMethod": "CMS_SIGN_ONLY", "documentsToSign": "x"}', "application/json"),
        (b'{"signMethod": "CMS_SIGN_ONLY", "documentsToSign": [{"id": 1}]}', "application/json"),
        (b'{"signMethod": "CMS_SIGN_ONLY", "documentsToSign": []}', "application/json"),
        (b"{}", "text/html"),
        (b'{"pad": "' + b"x" * (100 << 10) + b'"}', "application/json"),
    ]
    service = server.app[EGOV_QR]
    monkeypatch.setattr(
        service, "settings", dataclasses.replace(service.settings, egov_max_response_bytes=64 << 10)
    )
    for body, content_type in answers:
        link, proc = egov.new(doc)
        proc.api2_body, proc.api2_content_type = body, content_type
        err = await refused(link)
        assert err.status == 422 and err.code == "egov_service_answer", (body[:60], err.body)
        assert proc.api2_hits == 1
    # Methods cloudsign does not offer, named as such.
    for method in ("XML", "SIGN_BYTES_ARRAY"):
        link, proc = egov.new(doc, method)
        err = await refused(link)
        assert err.status == 422 and err.code == "egov_unsupported"
    link, proc = egov.new(doc, auth_type="Eds")
    assert (await refused(link)).code == "egov_unsupported"
    assert proc.api2_hits == 0
    # Expired at the service: refused before its documents are fetched.
    link, proc = egov.new(doc, expires_in=timedelta(seconds=-1))
    assert (await refused(link)).status == 409
    assert proc.api2_hits == 0
    # A refused link stays used.
    assert (await refused(link)).status == 409
    assert proc.api1_hits == 1

    async with server.app[DATABASE].read() as conn:
        mine = list(
            await conn.execute(
                select(signing_requests.c.id).where(signing_requests.c.owner_id == client.owner_id)
            )
        )
    assert mine == []
    assert all(p.puts == 0 for p in egov.procedures.values())


async def test_another_citizen_and_a_decline_get_no_signature(
    client: CloudsignClient, http: aiohttp.ClientSession, server: Any, egov: EgovService
) -> None:
    phone, cred, _identity = await phone_enrolled(client)
    egov.trust(cred["chain"])
    link, proc = egov.new([("a.txt", b"declined", "text/plain")])
    req = await client.egov_scan(link)
    request_id = req["request_id"]

    stranger = new_client(client.base_url, http)
    stranger_phone, _c, _i = await phone_enrolled(stranger)
    # The link is the first scanner's: another citizen cannot take it again,
    # see the request, or approve it.
    with pytest.raises(ApiError) as e:
        await stranger.egov_scan(link)
    assert e.value.status == 409
    with pytest.raises(ApiError) as e:
        await stranger.request_details(request_id)
    assert e.value.status == 404
    with pytest.raises(ApiError) as e:
        await stranger.request("POST", f"/api/v1/device/requests/{request_id}/challenge", {})
    assert e.value.status == 404

    declined = await client.decline(request_id)
    assert declined["status"] == "declined"

    async def recorded() -> bool:
        return (await _procedure(server, request_id))["status"] == "declined"

    await _until(recorded, "the decline to be recorded")
    with pytest.raises(ApiError) as e:
        await client.approve(
            request_id, phone, password=PASSWORD, face_challenge_id=await passed_face_check(client)
        )
    assert e.value.status == 409
    assert proc.puts == 0 and proc.received == []
    assert await _key_uses(server, client.owner_id) == 0
    assert await _key_uses(server, stranger.owner_id) == 0
    assert stranger_phone is not phone
    row = await _procedure(server, request_id)
    assert base64.b64encode(bytes(row["auth_token"])).decode() != proc.token
