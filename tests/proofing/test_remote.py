"""Remote identity proofing against the test registry (tests/registry_server.py),
over real HTTP, on both databases: a live face matched against the
registry's signed photo, and every registry answer that cannot be trusted
refused."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cloudsign.appkeys import PROOFING
from cloudsign.errors import ConfigurationError
from cloudsign.proofing import load_registry_key
from device_client.authenticator import SoftAuthenticator
from device_client.client import ApiError, CloudsignClient
from tests.face_images import live_burst
from tests.helpers import free_port, make_iin, passed_face_check
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
from tests.registry_server import Fault, RegistryPerson, RegistryServer

PASSWORD = "correct horse battery"
REFUSED = {
    "type": "urn:cloudsign:error:proofing_refused",
    "title": "Identity not confirmed",
    "status": 403,
    "detail": "the identity could not be confirmed",
    "code": "proofing_refused",
}


@pytest.fixture
def obama(registry: RegistryServer) -> RegistryPerson:
    """A person the registry knows, with a fresh IIN (refusals count per IIN)."""
    return registry.add("Obama", "Barack", "obama_1.jpg")


async def _attempt(
    http: aiohttp.ClientSession, url: str, iin: str, face: str
) -> tuple[str, int, dict[str, Any], str | None]:
    """Start a remote proofing for `iin` and send a live burst of `face`:
    (capture id, status, body, Retry-After)."""
    start = await post(
        http, f"{url}/api/v1/proofings/remote", json_body={"iin": iin, "email": "a@example.kz"}
    )
    assert start.status == 201, start.body
    capture_id = start.body["capture_id"]
    answer = await post(
        http,
        f"{url}/api/v1/proofings/remote/{capture_id}/burst",
        data=frames_form(live_burst(face, start.body["actions"])),
    )
    return capture_id, answer.status, answer.body, answer.headers.get("Retry-After")


# -- without a registry ---------------------------------------------------------------


async def test_remote_proofing_is_off_without_a_registry(
    http: aiohttp.ClientSession, base_url: str
) -> None:
    start = await post(
        http,
        f"{base_url}/api/v1/proofings/remote",
        json_body={"iin": make_iin(), "email": "a@example.kz"},
    )
    assert start.status == 503, start.body
    assert start.body["code"] == "unavailable"
    finish = await post(
        http,
        f"{base_url}/api/v1/proofings/remote/{uuid.uuid4()}/burst",
        data=frames_form(live_burst("obama_2.jpg", ["blink"])),
    )
    assert finish.status == 503, finish.body
    assert finish.body["code"] == "unavailable"


# -- with the test registry -------------------------------------------------------------


async def test_registry_identity_reaches_the_certificate(
    remote_client: CloudsignClient,
    remote_app: Any,
    registry: RegistryServer,
    obama: RegistryPerson,
    tmp_path: Path,
) -> None:
    mark = await last_seq(remote_app)
    challenge = await remote_client.remote_proofing(obama.iin, "barack@example.kz")
    assert challenge["actions"] == ["blink"]
    session = await remote_client.finish_remote_proofing(
        challenge["capture_id"], live_burst("obama_2.jpg", challenge["actions"])
    )
    assert session["scope"] == "enrolment"
    # The registry was asked for this IIN, with a fresh nonce.
    asked = registry.asked[-1]
    assert asked.iin == obama.iin
    assert len(asked.nonce) == 32
    assert asked.nonce not in {a.nonce for a in registry.asked[:-1]}

    await remote_client.accept_consents()
    totp = await remote_client.setup_totp()
    # The reference face is the registry's photo: obama passes the face check.
    face_id = await passed_face_check(remote_client, "obama_3.jpg")
    cred = await remote_client.create_credential(PASSWORD, await totp.fresh_code(), face_id)

    assert subject(tmp_path, cred["certificate"]) == (
        "emailAddress=barack@example.kz,GN=Barack,SN=Obama,CN=Obama Barack,"
        f"C=KZ,serialNumber=IIN{obama.iin}"
    )
    (proofing,) = await proofings_of(remote_app, obama.iin)
    assert proofing.method == "registry"
    assert proofing.status == "used"
    assert proofing.operator_id is None
    assert proofing.registry_reference == registry.references[-1]
    (proof,) = await events_since(remote_app, mark, "identity.proof")
    assert proof["data"] == {
        "method": "registry",
        "proofing": proofing.id,
        "reference": proofing.registry_reference,
    }
    (use,) = await events_since(remote_app, mark, "activation.use")
    assert use["owner_id"] == session["owner_id"]
    assert use["data"]["proofing"] == proofing.id
    assert use["data"]["method"] == "registry"
    assert await owner_statuses(remote_app, obama.iin) == ["active"]


async def test_the_applicant_cannot_name_themselves(
    http: aiohttp.ClientSession, remote_url: str, obama: RegistryPerson
) -> None:
    answer = await post(
        http,
        f"{remote_url}/api/v1/proofings/remote",
        json_body={"iin": obama.iin, "email": "a@example.kz", "surname": "Trump"},
    )
    assert answer.status == 400, answer.body


async def test_another_face_or_an_unknown_iin_get_the_same_refusal(
    http: aiohttp.ClientSession, remote_url: str, remote_app: Any, obama: RegistryPerson
) -> None:
    unknown = make_iin()
    known_start = await post(
        http,
        f"{remote_url}/api/v1/proofings/remote",
        json_body={"iin": obama.iin, "email": "a@b.kz"},
    )
    unknown_start = await post(
        http, f"{remote_url}/api/v1/proofings/remote", json_body={"iin": unknown, "email": "a@b.kz"}
    )
    assert known_start.status == unknown_start.status == 201
    assert known_start.body.keys() == unknown_start.body.keys()
    assert known_start.headers.keys() == unknown_start.headers.keys()

    answers = []
    for start, face in ((known_start, "biden_2.jpg"), (unknown_start, "obama_2.jpg")):
        capture_id = start.body["capture_id"]
        answer = await post(
            http,
            f"{remote_url}/api/v1/proofings/remote/{capture_id}/burst",
            data=frames_form(live_burst(face, start.body["actions"])),
        )
        assert answer.status == 403
        assert await capture_status(remote_app, capture_id) == "refused"
        answers.append(answer.body)
    assert answers == [REFUSED, REFUSED]
    for iin in (obama.iin, unknown):
        assert await owner_statuses(remote_app, iin) == []
        assert await proofings_of(remote_app, iin) == []


async def test_a_blink_spliced_into_a_photo_is_refused(
    http: aiohttp.ClientSession, remote_url: str, remote_app: Any, obama: RegistryPerson
) -> None:
    start = await post(
        http,
        f"{remote_url}/api/v1/proofings/remote",
        json_body={"iin": obama.iin, "email": "a@example.kz"},
    )
    frames = burst("obama_1.jpg", "oo") + burst("biden_1.jpg", "c") + burst("obama_1.jpg", "oo")
    answer = await post(
        http,
        f"{remote_url}/api/v1/proofings/remote/{start.body['capture_id']}/burst",
        data=frames_form(frames),
    )
    assert (answer.status, answer.body) == (403, REFUSED)
    assert await owner_statuses(remote_app, obama.iin) == []


@pytest.mark.parametrize(
    "fault",
    [
        Fault.STALE,
        Fault.FUTURE,
        Fault.NAIVE_TIME,
        Fault.WRONG_KEY,
        Fault.TAMPERED,
        Fault.WRONG_NONCE,
        Fault.WRONG_IIN,
        Fault.DUPLICATE_KEY,
        Fault.GARBAGE,
        Fault.NOT_FOUND,
    ],
)
async def test_untrusted_answers_are_refused(
    http: aiohttp.ClientSession,
    remote_url: str,
    remote_app: Any,
    registry: RegistryServer,
    obama: RegistryPerson,
    fault: Fault,
) -> None:
    """The live face is obama's and so is the registry's photo: only the
    answer is wrong, and that alone refuses it."""
    registry.fault = fault
    capture_id, status, body, _ = await _attempt(http, remote_url, obama.iin, "obama_2.jpg")
    assert (status, body) == (403, REFUSED)
    assert registry.asked[-1].iin == obama.iin
    assert await capture_status(remote_app, capture_id) == "refused"
    assert await owner_statuses(remote_app, obama.iin) == []
    assert await proofings_of(remote_app, obama.iin) == []
    # Honest again, the same person passes: it was the answer, not the face.
    registry.reset()
    _, status, body, _ = await _attempt(http, remote_url, obama.iin, "obama_2.jpg")
    assert status == 201, body
    assert await owner_statuses(remote_app, obama.iin) == ["pending"]


@pytest.mark.parametrize("failure", ["server_error", "hang", "unreachable"])
async def test_registry_unavailable_is_503_and_opens_nothing(
    http: aiohttp.ClientSession,
    remote_url: str,
    remote_app: Any,
    registry: RegistryServer,
    obama: RegistryPerson,
    failure: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    adapter = remote_app[PROOFING].registry
    if failure == "server_error":
        registry.fault = Fault.SERVER_ERROR
    elif failure == "hang":
        registry.fault = Fault.HANG
        # Give up in half a second, not the 15 of production.
        monkeypatch.setattr(adapter, "timeout", aiohttp.ClientTimeout(total=0.5))
    else:
        monkeypatch.setattr(adapter, "url", f"http://127.0.0.1:{free_port()}")
    capture_id, status, body, _ = await _attempt(http, remote_url, obama.iin, "obama_2.jpg")
    assert status == 503, body
    assert body["code"] == "registry_unavailable"
    assert await capture_status(remote_app, capture_id) == "refused"
    assert await owner_statuses(remote_app, obama.iin) == []
    assert await proofings_of(remote_app, obama.iin) == []


async def test_repeated_refusals_lock_the_iin(
    http: aiohttp.ClientSession,
    remote_url: str,
    remote_app: Any,
    registry: RegistryServer,
    obama: RegistryPerson,
) -> None:
    mark = await last_seq(remote_app)
    for _ in range(5):  # max_failed_attempts
        _, status, body, _ = await _attempt(http, remote_url, obama.iin, "biden_2.jpg")
        assert (status, body) == (403, REFUSED)
    asked = len(registry.asked)
    # Locked: even obama's own face is not looked at, nor the registry asked.
    _, status, body, retry_after = await _attempt(http, remote_url, obama.iin, "obama_2.jpg")
    assert status == 423, body
    assert body["code"] == "locked"
    assert retry_after is not None and int(retry_after) > 0
    assert len(registry.asked) == asked
    assert await owner_statuses(remote_app, obama.iin) == []
    failures = await events_since(remote_app, mark, "auth.failure")
    assert [e["data"]["factor"] for e in failures] == ["remote-proofing"] * 5
    (lock,) = await events_since(remote_app, mark, "lock")
    assert lock["data"]["limit"] == "login.iin"
    assert lock["data"]["factor"] == "remote-proofing"
    # Another IIN from the same address is not locked.
    other = registry.add("Obama", "Barack", "obama_1.jpg")
    _, status, body, _ = await _attempt(http, remote_url, other.iin, "obama_2.jpg")
    assert status == 201, body


async def test_a_capture_is_answered_once(
    http: aiohttp.ClientSession, remote_url: str, obama: RegistryPerson
) -> None:
    capture_id, status, body, _ = await _attempt(http, remote_url, obama.iin, "obama_2.jpg")
    assert status == 201, body
    again = await post(
        http,
        f"{remote_url}/api/v1/proofings/remote/{capture_id}/burst",
        data=frames_form(live_burst("obama_2.jpg", ["blink"])),
    )
    assert again.status == 409, again.body


# -- the registry key ----------------------------------------------------------------


def test_registry_key_from_pem_file_or_raw_base64(tmp_path: Path) -> None:
    registry = RegistryServer()
    pem = tmp_path / "registry.pem"
    pem.write_bytes(registry.public_key_pem())
    raw = base64.b64decode(registry.public_key)
    for value in (str(pem), registry.public_key):
        key = load_registry_key(value)
        assert key.public_bytes_raw() == raw
    for bad in ("", "not base64", base64.b64encode(b"short").decode(), str(tmp_path / "none")):
        with pytest.raises(ConfigurationError):
            load_registry_key(bad)


async def test_a_remote_proofing_binds_the_first_phone(
    remote_client: CloudsignClient, remote_app: Any, registry: RegistryServer, obama: RegistryPerson
) -> None:
    """The app's enrolment without a desk: the remote proofing's enrolment
    session is the possession of the moment, so a face check binds the
    phone, which is then the key's possession factor."""
    challenge = await remote_client.remote_proofing(obama.iin, "barack@example.kz")
    await remote_client.finish_remote_proofing(
        challenge["capture_id"], live_burst("obama_2.jpg", challenge["actions"])
    )
    await remote_client.accept_consents()
    phone = SoftAuthenticator(origin=remote_client.base_url)
    device = await remote_client.bind_device(
        phone, "Pixel 7", face_challenge_id=await passed_face_check(remote_client, "obama_3.jpg")
    )
    assert device["status"] == "active"
    cred = await remote_client.create_credential(
        PASSWORD, None, await passed_face_check(remote_client, "obama_3.jpg"), device=phone
    )
    assert cred["certificate"]
    (proofing,) = await proofings_of(remote_app, obama.iin)
    assert proofing.method == "registry" and proofing.status == "used"
    # Another phone now needs every factor, not the proofing.
    other = SoftAuthenticator(origin=remote_client.base_url)
    with pytest.raises(ApiError) as e:
        await remote_client.bind_device(
            other, "Tablet", face_challenge_id=await passed_face_check(remote_client, "obama_3.jpg")
        )
    assert e.value.status == 400 and "password" in e.value.body["detail"]
