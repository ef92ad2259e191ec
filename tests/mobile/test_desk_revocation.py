"""A lost phone revoked at the registration desk, for a citizen who has
neither the phone nor the key password at hand: the officer's live capture
must be the account's enrolled face; then the devices are revoked, the
pending requests end, and the events name the officer."""

from __future__ import annotations

import hashlib
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from cloudsign.appkeys import DATABASE
from cloudsign.storage.schema import events
from device_client.client import ApiError, CloudsignClient
from tests.helpers import new_client
from tests.mobile.test_devices import PASSWORD, phone_enrolled
from tests.staff import Staff

PATH = "/operator/api/v1/desk/device-revocations"


def _body(iin: str, capture_id: str, **over: Any) -> dict[str, Any]:
    body = {
        "iin": iin,
        "document": {"type": "id_card", "number": "N01234567"},
        "capture_id": capture_id,
    }
    body.update(over)
    return body


async def test_the_desk_revokes_a_lost_phone_for_its_owner_in_person(
    client: CloudsignClient, http: aiohttp.ClientSession, server: Any, staff: Staff
) -> None:
    phone, _cred, identity = await phone_enrolled(client)
    iin = identity["iin"]
    desktop = new_client(client.base_url, http)
    await desktop.login(iin, None, PASSWORD, device=phone)
    pending = await desktop.create_signing_request(
        [{"name": "h", "format": "raw", "hash": hashlib.sha256(b"x").digest()}], "text"
    )
    desk = staff.registration

    # Someone else in front of the officer: refused, counted, nothing revoked.
    with pytest.raises(ApiError) as e:
        await desk.request("POST", PATH, _body(iin, await desk.capture_face("biden_1.jpg")))
    assert e.value.status in (401, 403), e.value.body
    assert [d["status"] for d in await client.devices()] == ["active"]

    # Other officers may not; a capture is needed, and it is spent once.
    with pytest.raises(ApiError) as e:
        await staff.revocation.request(
            "POST", PATH, _body(iin, "00000000-0000-4000-8000-000000000000")
        )
    assert e.value.status == 403
    capture = await desk.capture_face("obama_3.jpg")
    with pytest.raises(ApiError) as e:
        await desk.request("POST", PATH, _body(iin, capture, device_id="not-a-uuid"))
    assert e.value.status == 400
    with pytest.raises(ApiError) as e:
        await desk.request(
            "POST", PATH, _body(iin, capture, document={"type": "library_card", "number": "1"})
        )
    assert e.value.status == 400

    # The owner in person: every bound device revoked.
    revoked = await desk.request("POST", PATH, _body(iin, capture))
    assert [d["name"] for d in revoked["revoked"]] == ["Pixel 7"]
    assert [d["status"] for d in revoked["revoked"]] == ["revoked"]
    assert [d["status"] for d in await client.devices()] == ["revoked"]
    with pytest.raises(ApiError) as e:
        await desk.request("POST", PATH, _body(iin, capture))
    assert e.value.status == 409  # the capture was spent

    # The phone is no factor any more; its pending request ended.
    assert (await desktop.signing_request(pending["request_id"]))["status"] == "failed"
    other = new_client(client.base_url, http)
    with pytest.raises(ApiError):
        await other.login(iin, None, PASSWORD, device=phone)

    async with server.app[DATABASE].read() as conn:
        rows = list(
            await conn.execute(
                select(events.c.event_type, events.c.data)
                .where(events.c.owner_id == client.owner_id)
                .order_by(events.c.seq)
            )
        )
    failures = [d for t, d in rows if t == "auth.failure" and d.get("factor") == "desk-face"]
    assert len(failures) == 1
    (revocation,) = [d for t, d in rows if t == "device.revoke"]
    assert revocation["by"] == "desk" and desk.username in revocation["operator"]

    # Nothing left to revoke; an unknown IIN is no account.
    with pytest.raises(ApiError) as e:
        await desk.request("POST", PATH, _body(iin, await desk.capture_face("obama_2.jpg")))
    assert e.value.status == 404
    with pytest.raises(ApiError) as e:
        await desk.request(
            "POST", PATH, _body("000000000000", await desk.capture_face("obama_2.jpg"))
        )
    assert e.value.status == 400
