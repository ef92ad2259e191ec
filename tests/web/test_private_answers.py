"""What an API answer carries stays out of caches and out of headers: every
answer under /api, /csc, /operator and the session routes is `no-store`
(errors included), a signed file's name cannot break its header, and an
over-long authorisation description is refused before any factor is spent."""

from __future__ import annotations

import base64
import os
from typing import Any

import aiohttp
import pytest

from cloudsign.signing.api import content_disposition
from device_client.client import ApiError, CloudsignClient
from tests.helpers import enrolled, passed_face_check, person
from tests.staff import Staff

PASSWORD = "correct horse battery"


async def _headers(
    http: aiohttp.ClientSession, method: str, url: str, **kw: Any
) -> tuple[int, Any, Any]:
    async with http.request(method, url, **kw) as r:
        return r.status, r.headers, await r.json(content_type=None)


async def test_answers_with_tokens_sads_and_codes_are_never_stored(
    client: CloudsignClient, http: aiohttp.ClientSession, base_url: str, staff: Staff
) -> None:
    totp, cred = await enrolled(client)
    auth = {"Authorization": f"Bearer {client.access_token}"}
    face = await passed_face_check(client)
    wrapped = await client.wrap_password(PASSWORD, "authorize")
    body = {
        "hashes": [base64.b64encode(os.urandom(32)).decode()],
        "password_key": wrapped.to_json(),
        "otp": await totp.fresh_code(),
        "face_challenge_id": face,
    }
    answers = [
        await _headers(
            http,
            "POST",
            f"{base_url}/api/v1/me/credentials/{cred['credential_id']}/authorize",
            json=body,
            headers=auth,
        ),
        await _headers(http, "GET", f"{base_url}/api/v1/me", headers=auth),
        await _headers(http, "POST", f"{base_url}/api/v1/sessions/challenge", json={"iin": "1"}),
        await _headers(http, "POST", f"{base_url}/csc/v2/credentials/list", json={}, headers=auth),
        await _headers(http, "GET", f"{base_url}/portal/session"),
        await _headers(
            http,
            "GET",
            f"{staff.url}/operator/api/v1/me",
            headers={"Authorization": f"Bearer {staff.auditor.token}"},
        ),
    ]
    status, _, sad = answers[0]
    assert status == 200 and "SAD" in sad
    for status, headers, answer in answers:
        assert headers.get("Cache-Control") == "no-store", (status, answer)
    # The desk's activation code too.
    capture = await staff.registration.capture_face("obama_1.jpg")
    status, headers, answer = await _headers(
        http,
        "POST",
        f"{staff.url}/operator/api/v1/proofings",
        json={
            "identity": person(),
            "document": {"type": "id_card", "number": "N0000001"},
            "capture_id": capture,
        },
        headers={"Authorization": f"Bearer {staff.registration.token}"},
    )
    assert status == 201 and "activation_code" in answer
    assert headers.get("Cache-Control") == "no-store"
    # The public repository keeps its own caching.
    async with http.get(f"{base_url}/pki/ca/root.cer") as r:
        assert r.headers.get("Cache-Control") != "no-store"


@pytest.mark.parametrize(
    "name",
    ["contract\r\nSet-Cookie: x=1.pdf", 'a"b\\c.pdf', "шарт\x00\x1b.pdf", "\n" * 10],
)
def test_a_file_name_cannot_break_the_header(name: str) -> None:
    header = content_disposition(name)
    assert "\r" not in header and "\n" not in header and "\x00" not in header
    assert header.startswith('attachment; filename="')
    fallback = header.split('filename="', 1)[1].split('"', 1)[0]
    assert '"' not in fallback and "\\" not in fallback


async def test_an_over_long_description_spends_no_factor(client: CloudsignClient) -> None:
    totp, cred = await enrolled(client)
    face = await passed_face_check(client)
    wrapped = await client.wrap_password(PASSWORD, "authorize")
    otp = await totp.fresh_code()
    body = {
        "hashes": [base64.b64encode(os.urandom(32)).decode()],
        "password_key": wrapped.to_json(),
        "otp": otp,
        "face_challenge_id": face,
    }
    path = f"/api/v1/me/credentials/{cred['credential_id']}/authorize"
    with pytest.raises(ApiError) as err:
        await client.request("POST", path, {**body, "description": "d" * 501})
    assert err.value.status == 400 and err.value.body["field"] == "description"
    # The face check, the code and the transport key are all still unspent.
    answer = await client.request("POST", path, {**body, "description": "d" * 500})
    assert "SAD" in answer
