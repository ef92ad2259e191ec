"""Identity proofing at the registration desk, over real HTTP, on both
databases: the officer's live capture and approval, the one-time activation
code, the enrolment it opens, and no certificate without it."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select, update

from cloudsign.accounts.tables import owners
from cloudsign.appkeys import DATABASE, GUARD, LIMITS, PROOFING
from cloudsign.credentials.tables import credentials
from cloudsign.operators.tables import operators
from cloudsign.proofing.tables import proofings
from device_client.client import ApiError, CloudsignClient
from tests.face_images import live_burst
from tests.helpers import new_client, passed_face_check, person
from tests.proofing.support import (
    burst,
    capture_status,
    events_since,
    frames_form,
    last_seq,
    owner_statuses,
    post,
    proofings_of,
    subject,
)
from tests.staff import OperatorClient, Staff

PASSWORD = "correct horse battery"
DESK = "/operator/api/v1/desk/captures"
APPROVE = "/operator/api/v1/proofings"


def _approval(identity: dict[str, str], capture_id: str) -> dict[str, Any]:
    return {
        "identity": identity,
        "document": {"type": "passport", "number": f"N{secrets.randbelow(10**8):08d}"},
        "capture_id": capture_id,
    }


async def _send_burst(officer: OperatorClient, frames: list[bytes]) -> tuple[str, int, Any]:
    """A new desk capture answered with `frames`: (capture id, status, body)."""
    capture = await officer.request("POST", DESK)
    async with officer.http.post(
        f"{officer.url}{DESK}/{capture['capture_id']}/burst",
        data=frames_form(frames),
        headers={"Authorization": f"Bearer {officer.token}"},
    ) as resp:
        return capture["capture_id"], resp.status, await resp.json(content_type=None)


async def _finish_enrolment(client: CloudsignClient, face: str = "obama_2.jpg") -> dict[str, Any]:
    """On the device, after activation: consents, TOTP, face check, credential."""
    await client.accept_consents()
    totp = await client.setup_totp()
    face_id = await passed_face_check(client, face)
    return await client.create_credential(PASSWORD, await totp.fresh_code(), face_id)


async def _credential_count(app: Any, owner_id: str) -> int:
    async with app[DATABASE].read() as conn:
        rows = await conn.execute(
            select(credentials.c.id).where(credentials.c.owner_id == owner_id)
        )
        return len(rows.all())


# -- the whole path ----------------------------------------------------------------------


async def test_desk_proofing_to_a_certificate_of_the_recorded_identity(
    client: CloudsignClient, staff: Staff, app: Any, tmp_path: Path
) -> None:
    officer = staff.registration
    identity = person(surname="Nurlanova", given_name="Aigerim")
    mark = await last_seq(app)
    proofing = await officer.proof(identity, "obama_1.jpg")
    assert proofing["activation_uri"].endswith(f"/portal/#/activate/{proofing['activation_code']}")
    session = await client.activate(proofing["activation_code"])
    assert session["scope"] == "enrolment"
    cred = await _finish_enrolment(client)

    assert subject(tmp_path, cred["certificate"]) == (
        f"emailAddress={identity['email']},GN=Aigerim,SN=Nurlanova,CN=Nurlanova Aigerim,"
        f"C=KZ,serialNumber=IIN{identity['iin']}"
    )
    (row,) = await proofings_of(app, identity["iin"])
    assert row.id == proofing["proofing_id"]
    assert (row.method, row.status, row.owner_id) == ("desk", "used", session["owner_id"])
    assert row.template_sealed == b""  # the face is the account's now, not the proofing's
    async with app[DATABASE].read() as conn:
        recorded_by = (
            await conn.execute(
                select(operators.c.username).where(operators.c.id == row.operator_id)
            )
        ).scalar_one()
    assert recorded_by == officer.username

    found = await events_since(app, mark, "identity.proof", "activation.issue", "activation.use")
    assert [(e["type"], e["data"]) for e in found] == [
        (
            "identity.proof",
            {
                "method": "desk",
                "proofing": row.id,
                "operator": officer.username,
                "document_type": "id_card",
            },
        ),
        ("activation.issue", {"method": "desk", "proofing": row.id, "operator": officer.username}),
        ("activation.use", {"method": "desk", "proofing": row.id}),
    ]
    assert found[2]["owner_id"] == session["owner_id"]


async def test_the_officer_is_named_by_the_session_only(staff: Staff) -> None:
    officer = staff.registration
    capture_id = await officer.capture_face("obama_1.jpg")
    body = {**_approval(person(), capture_id), "operator": "someone.else"}
    status, answer = await officer.request_status("POST", APPROVE, body)
    assert status == 400, answer
    # The capture is still there for a proper approval.
    assert (await officer.request("POST", APPROVE, _approval(person(), capture_id)))["proofing_id"]


# -- the activation code -------------------------------------------------------------------


async def test_an_activation_code_works_once(
    http: aiohttp.ClientSession, base_url: str, staff: Staff
) -> None:
    proofing = await staff.registration.proof(person())
    code = proofing["activation_code"]
    first = new_client(base_url, http)
    # Typed as the citizen might: lower case, without the dashes.
    await first.activate(code.lower().replace("-", ""))
    for again in (code, code.lower()):
        with pytest.raises(ApiError) as err:
            await new_client(base_url, http).activate(again)
        assert err.value.status == 401


async def test_an_expired_code_is_refused_and_the_sweep_frees_the_iin(
    http: aiohttp.ClientSession, base_url: str, staff: Staff, app: Any
) -> None:
    identity = person()
    proofing = await staff.registration.proof(identity)
    past = datetime.now(UTC) - timedelta(minutes=1)
    async with app[DATABASE].transaction() as conn:
        await conn.execute(
            update(proofings)
            .where(proofings.c.id == proofing["proofing_id"])
            .values(expires_at=past)
        )
    with pytest.raises(ApiError) as err:
        await new_client(base_url, http).activate(proofing["activation_code"])
    assert err.value.status == 401

    assert await app[PROOFING].sweep() >= 1
    (row,) = await proofings_of(app, identity["iin"])
    assert (row.status, row.activation_code_hash, row.template_sealed) == ("used", None, b"")
    assert await owner_statuses(app, identity["iin"]) == []
    # A new proofing of the same person goes all the way.
    client = new_client(base_url, http)
    await client.activate((await staff.registration.proof(identity))["activation_code"])
    await _finish_enrolment(client)
    assert await owner_statuses(app, identity["iin"]) == ["active"]


async def test_an_unfinished_enrolment_lapses_and_frees_the_iin(
    http: aiohttp.ClientSession, base_url: str, staff: Staff, app: Any
) -> None:
    identity = person()
    abandoned = new_client(base_url, http)
    session = await abandoned.activate(
        (await staff.registration.proof(identity))["activation_code"]
    )
    await abandoned.accept_consents()
    async with app[DATABASE].transaction() as conn:
        await conn.execute(
            update(owners)
            .where(owners.c.id == session["owner_id"])
            .values(pending_until=datetime.now(UTC) - timedelta(minutes=1))
        )
    await app[PROOFING].sweep()
    assert await owner_statuses(app, identity["iin"]) == ["lapsed"]
    with pytest.raises(ApiError) as err:
        await abandoned.setup_totp()
    assert err.value.status == 401

    client = new_client(base_url, http)
    await client.activate((await staff.registration.proof(identity))["activation_code"])
    await _finish_enrolment(client)
    assert await owner_statuses(app, identity["iin"]) == ["lapsed", "active"]


@pytest.fixture
async def clean_activation_counter(app: Any) -> AsyncIterator[None]:
    """The activation counter of this test process's address, from zero and
    back to zero (the other tests redeem codes from the same address)."""
    await app[GUARD].clear(app[LIMITS].activation, "127.0.0.1")
    yield
    await app[GUARD].clear(app[LIMITS].activation, "127.0.0.1")


@pytest.mark.usefixtures("clean_activation_counter")
async def test_wrong_activation_codes_lock_the_address(
    http: aiohttp.ClientSession, base_url: str, staff: Staff, app: Any
) -> None:
    proofing = await staff.registration.proof(person())
    mark = await last_seq(app)
    url = f"{base_url}/api/v1/activations"
    for _ in range(5):  # max_failed_attempts
        wrong = "-".join(secrets.token_hex(2).upper() for _ in range(5))
        answer = await post(http, url, json_body={"code": wrong})
        assert answer.status == 401, answer.body
    for code in ("AAAA-BBBB-CCCC-DDDD-EEEE", proofing["activation_code"]):
        # Locked: not even the right code is looked at.
        answer = await post(http, url, json_body={"code": code})
        assert answer.status == 423, answer.body
        assert answer.body["code"] == "locked"
        assert int(answer.headers["Retry-After"]) > 0
    failures = await events_since(app, mark, "auth.failure")
    assert [e["data"]["factor"] for e in failures] == ["activation"] * 5
    (lock,) = await events_since(app, mark, "lock")
    assert (lock["data"]["limit"], lock["data"]["factor"]) == ("activation.code", "activation")
    # The code was not spent while the address was locked.
    await app[GUARD].clear(app[LIMITS].activation, "127.0.0.1")
    session = await new_client(base_url, http).activate(proofing["activation_code"])
    assert session["scope"] == "enrolment"


# -- the capture behind an approval ------------------------------------------------------------


async def test_approval_needs_the_same_officers_capture(staff: Staff) -> None:
    other = await staff.security.new_operator(["registration_officer"])
    capture_id = await staff.registration.capture_face("obama_1.jpg")
    status, body = await other.request_status("POST", APPROVE, _approval(person(), capture_id))
    assert status == 409, body
    # Nor can the other officer answer this officer's challenge.
    pending = await staff.registration.request("POST", DESK)
    async with other.http.post(
        f"{other.url}{DESK}/{pending['capture_id']}/burst",
        data=frames_form(live_burst("obama_1.jpg", pending["actions"])),
        headers={"Authorization": f"Bearer {other.token}"},
    ) as resp:
        assert resp.status == 404
    # The capture's own officer can still approve it.
    status, body = await staff.registration.request_status(
        "POST", APPROVE, _approval(person(), capture_id)
    )
    assert status == 201, body


@pytest.mark.parametrize(
    "frames",
    [
        pytest.param(lambda: burst("obama_1.jpg", "ooooo"), id="photo-without-blink"),
        pytest.param(lambda: burst("two_people.jpg", "ooooo"), id="two-people"),
        pytest.param(
            lambda: (
                burst("obama_1.jpg", "oo") + burst("biden_1.jpg", "c") + burst("obama_1.jpg", "oo")
            ),
            id="someone-else-blinks",
        ),
    ],
)
async def test_a_refused_burst_cannot_be_approved(staff: Staff, app: Any, frames: Any) -> None:
    officer = staff.registration
    capture_id, status, body = await _send_burst(officer, frames())
    assert status == 422, body
    assert body["code"] == "face_refused"
    assert await capture_status(app, capture_id) == "refused"
    status, body = await officer.request_status("POST", APPROVE, _approval(person(), capture_id))
    assert status == 409, body


async def test_a_capture_backs_one_proofing(staff: Staff, app: Any) -> None:
    officer = staff.registration
    capture_id = await officer.capture_face("obama_1.jpg")
    # Two approvals at once: one proofing.
    identities = [person(), person()]
    answers = await asyncio.gather(
        *(officer.request_status("POST", APPROVE, _approval(i, capture_id)) for i in identities)
    )
    assert sorted(status for status, _ in answers) == [201, 409], answers
    assert [len(await proofings_of(app, i["iin"])) for i in identities] in ([1, 0], [0, 1])
    # And later ones are refused too, as is a second burst for it.
    status, body = await officer.request_status("POST", APPROVE, _approval(person(), capture_id))
    assert status == 409, body
    async with officer.http.post(
        f"{officer.url}{DESK}/{capture_id}/burst",
        data=frames_form(live_burst("obama_1.jpg", ["blink"])),
        headers={"Authorization": f"Bearer {officer.token}"},
    ) as resp:
        assert resp.status == 409


# -- who may use the desk ------------------------------------------------------------------------


async def test_only_registration_officers_use_the_desk(
    staff: Staff, http: aiohttp.ClientSession, base_url: str
) -> None:
    capture = await staff.registration.request("POST", DESK)
    burst_path = f"{DESK}/{capture['capture_id']}/burst"

    def body(path: str) -> dict[str, Any]:
        if path == burst_path:
            return {"data": frames_form(live_burst("obama_1.jpg", capture["actions"]))}
        return {"json": _approval(person(), capture["capture_id"])}

    for path in (DESK, burst_path, APPROVE):
        for officer in (staff.revocation, staff.auditor, staff.security):
            async with http.post(
                staff.url + path, headers={"Authorization": f"Bearer {officer.token}"}, **body(path)
            ) as resp:
                assert resp.status == 403, (path, officer.username, await resp.text())
        async with http.post(staff.url + path, **body(path)) as resp:
            assert resp.status == 401, path
        async with http.post(base_url + path, **body(path)) as resp:
            assert resp.status == 404, path  # the public listener has no desk
    # None of that touched the capture: its officer still completes it.
    await staff.registration.request("POST", burst_path, data=body(burst_path)["data"])


# -- no certificate without proofing ---------------------------------------------------------------


async def test_the_face_check_is_against_the_desk_capture(
    client: CloudsignClient, staff: Staff, app: Any
) -> None:
    await client.activate(
        (await staff.registration.proof(person(), "obama_1.jpg"))["activation_code"]
    )
    await client.accept_consents()
    totp = await client.setup_totp()
    challenge = await client.face_challenge()
    with pytest.raises(ApiError) as err:
        await client.send_burst(
            challenge["challenge_id"], live_burst("biden_1.jpg", challenge["actions"])
        )
    assert (err.value.status, err.value.code) == (403, "face_check_failed")
    with pytest.raises(ApiError) as err:
        await client.create_credential(PASSWORD, await totp.fresh_code(), challenge["challenge_id"])
    assert err.value.status == 403
    assert client.owner_id is not None
    assert await _credential_count(app, client.owner_id) == 0
    # The citizen at the desk passes.
    face_id = await passed_face_check(client, "obama_2.jpg")
    await client.create_credential(PASSWORD, await totp.fresh_code(), face_id)
    assert await _credential_count(app, client.owner_id) == 1


async def test_no_certificate_without_a_proofing(
    client: CloudsignClient, staff: Staff, app: Any, http: aiohttp.ClientSession, base_url: str
) -> None:
    async with http.post(f"{base_url}/api/v1/me/credentials", json={}) as resp:
        assert resp.status == 401
    identity = person()
    await client.activate((await staff.registration.proof(identity))["activation_code"])
    await client.accept_consents()
    totp = await client.setup_totp()
    face_id = await passed_face_check(client)
    await client.create_credential(PASSWORD, await totp.fresh_code(), face_id)
    assert client.owner_id is not None
    # The enrolment token became an owner's token: it made its one key.
    again = await passed_face_check(client)
    with pytest.raises(ApiError) as err:
        await client.create_credential(PASSWORD, await totp.fresh_code(), again)
    assert (err.value.status, err.value.code) == (403, "forbidden")
    # Nor does a fresh login's token make a key.
    login = new_client(base_url, http)
    await login.login(identity["iin"], await totp.fresh_code(), PASSWORD)
    face_id = await passed_face_check(login)
    with pytest.raises(ApiError) as err:
        await login.create_credential(PASSWORD, await totp.fresh_code(), face_id)
    assert (err.value.status, err.value.code) == (403, "forbidden")
    assert await _credential_count(app, client.owner_id) == 1
    (row,) = await proofings_of(app, identity["iin"])
    assert row.status == "used"
