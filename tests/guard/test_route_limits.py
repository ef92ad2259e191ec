"""Every route that takes a one-time code counts it: after five wrong codes
the sixth request is refused with 423 and `Retry-After`, even with every
factor right, and the audit log has an `auth.failure` per wrong code and a
`lock` event. Over real HTTP, on both databases."""

from __future__ import annotations

import base64
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pyotp
import pytest
from sqlalchemy import select

from cloudsign.appkeys import DATABASE
from cloudsign.storage.schema import events
from device_client.client import CloudsignClient, TotpDevice
from device_client.device import Argon2Params, derive_password_key, wrap_for_transport
from tests.face_images import photo
from tests.helpers import TOTP_CLOCK, activated, enrolled, passed_face_check, person

PASSWORD = "correct horse battery"
MAX_FAILED = 5


@dataclass
class Citizen:
    client: CloudsignClient
    totp: TotpDevice
    cred: dict[str, Any] | None
    iin: str

    async def wrong_code(self) -> str:
        code = await self.totp.fresh_code()
        return f"{(int(code) + 500_000) % 1_000_000:06d}"

    async def password_key(self, purpose: str = "authorize") -> dict[str, str]:
        return (await self.client.wrap_password(PASSWORD, purpose)).to_json()

    async def login_key(self) -> dict[str, str]:
        challenge = await self.client.request(
            "POST", "/api/v1/sessions/challenge", {"iin": self.iin}
        )
        kpw = derive_password_key(PASSWORD, Argon2Params.from_json(challenge["key_params"]))
        return wrap_for_transport(
            kpw, challenge["transport_key_id"], base64.b64decode(challenge["public_key"])
        ).to_json()

    @property
    def cred_path(self) -> str:
        assert self.cred is not None
        return f"/api/v1/me/credentials/{self.cred['credential_id']}"


Request = tuple[str, str, dict[str, Any]]
#: (citizen, code, face check id or None) -> the request carrying that code.
Build = Callable[[Citizen, str, str | None], Awaitable[Request]]


async def _login(c: Citizen, otp: str, face: str | None) -> Request:
    return (
        "POST",
        "/api/v1/sessions",
        {"iin": c.iin, "otp": otp, "password_key": await c.login_key()},
    )


async def _portal_login(c: Citizen, otp: str, face: str | None) -> Request:
    body = {"iin": c.iin, "otp": otp, "password_key": await c.login_key()}
    return "POST", "/portal/session/login", body


async def _confirm_totp(c: Citizen, otp: str, face: str | None) -> Request:
    return "POST", "/api/v1/me/totp/confirm", {"otp": otp}


async def _create(c: Citizen, otp: str, face: str | None) -> Request:
    body = {
        "algorithm": "ec-p256",
        "password_key": await c.password_key("credential.create"),
        "otp": otp,
        "face_challenge_id": face,
    }
    return "POST", "/api/v1/me/credentials", body


def _factors(path: str, method: str = "POST", **extra: Any) -> Build:
    async def build(c: Citizen, otp: str, face: str | None) -> Request:
        body = {"password_key": await c.password_key(), "otp": otp, "face_challenge_id": face}
        for key, value in extra.items():
            body[key] = (await c.password_key("credential.create")) if value == "NEW_KEY" else value
        return method, path.format(cred=c.cred_path), body

    return build


async def _authorize(c: Citizen, otp: str, face: str | None) -> Request:
    body = {
        "password_key": await c.password_key(),
        "otp": otp,
        "face_challenge_id": face,
        "hashes": [base64.b64encode(os.urandom(32)).decode()],
    }
    return "POST", c.cred_path + "/authorize", body


async def _csc_authorize(c: Citizen, otp: str, face: str | None) -> Request:
    assert c.cred is not None
    wrapped = await c.client.wrap_password(PASSWORD, "authorize")
    auth = [{"id": "PIN", "value": wrapped.to_pin()}, {"id": "OTP", "value": otp}]
    if face:
        auth.append({"id": "FACE", "value": face})
    body = {
        "credentialID": c.cred["credential_id"],
        "numSignatures": 1,
        "hashes": [base64.b64encode(os.urandom(32)).decode()],
        "hashAlgorithmOID": "2.16.840.1.101.3.4.2.1",
        "authData": auth,
    }
    return "POST", "/csc/v2/credentials/authorize", body


async def _replace_face(c: Citizen, otp: str, face: str | None) -> Request:
    body = {
        "password_key": await c.password_key(),
        "otp": otp,
        "face_challenge_id": face,
        "images": [base64.b64encode(photo("obama_2.jpg")).decode()],
    }
    return "PUT", "/api/v1/me/face", body


ROUTES: dict[str, tuple[str, Build]] = {
    # name: (what the citizen has: "enrolment" or "full", the request)
    "login": ("full", _login),
    "portal-login": ("full", _portal_login),
    "totp-confirm": ("enrolment", _confirm_totp),
    "create-credential": ("enrolment", _create),
    "authorize": ("full", _authorize),
    "csc-authorize": ("full", _csc_authorize),
    "revoke": ("full", _factors("{cred}/revoke")),
    "delete-credential": ("full", _factors("{cred}", "DELETE")),
    "delete-account": ("full", _factors("/api/v1/me", "DELETE")),
    "replace-face": ("full", _replace_face),
    "change-password": ("full", _factors("{cred}/password", new_password_key="NEW_KEY")),
    "rekey": ("full", _factors("{cred}/rekey", new_password_key="NEW_KEY")),
}


async def _citizen(client: CloudsignClient, stage: str, route: str) -> Citizen:
    identity = person()
    if stage == "full":
        totp, cred = await enrolled(client, identity=identity)
        return Citizen(client, totp, cred, identity["iin"])
    await activated(client, identity)
    await client.accept_consents()
    if route == "totp-confirm":
        # Begun, not confirmed: confirming is the route under test.
        uri = (await client.request("POST", "/api/v1/me/totp"))["provisioning_uri"]
        seed = pyotp.parse_uri(uri)
        assert isinstance(seed, pyotp.TOTP)
        totp = TotpDevice(seed, TOTP_CLOCK)
    else:
        totp = await client.setup_totp()
    return Citizen(client, totp, None, identity["iin"])


async def _send(client: CloudsignClient, request: Request) -> tuple[int, Any, Any]:
    method, path, body = request
    headers = {"Authorization": f"Bearer {client.access_token}"} if client.access_token else {}
    if path.startswith("/api/v1/sessions") or path.startswith("/portal/session"):
        headers = {}
    async with client.session.request(
        method, client.base_url + path, json=body, headers=headers
    ) as resp:
        return resp.status, resp.headers, await resp.json(content_type=None)


async def _events(app: Any, kind: str) -> list[dict[str, Any]]:
    async with app[DATABASE].read() as conn:
        rows = (await conn.execute(select(events.c.data).where(events.c.event_type == kind))).all()
    return [dict(data or {}) for (data,) in rows]


@pytest.mark.parametrize("route", sorted(ROUTES))
async def test_wrong_codes_lock_the_route(client: CloudsignClient, app: Any, route: str) -> None:
    stage, build = ROUTES[route]
    citizen = await _citizen(client, stage, route)
    failures_before = len(await _events(app, "auth.failure"))
    locks_before = len(await _events(app, "lock"))
    for _ in range(MAX_FAILED):
        wrong = await build(citizen, await citizen.wrong_code(), None)
        status, _, body = await _send(client, wrong)
        assert status in (401, 403), body
    # The sixth, with the right code (and the face where one is needed), is refused.
    needs_face = route not in ("login", "portal-login", "totp-confirm")
    face = await passed_face_check(client) if needs_face else None
    right = await build(citizen, await citizen.totp.fresh_code(), face)
    status, headers, body = await _send(client, right)
    assert status == 423, body
    # CSC routes answer in CSC's error body.
    assert body.get("code", body.get("error")) in ("locked", "access_denied")
    assert int(headers["Retry-After"]) > 0
    assert len(await _events(app, "auth.failure")) >= failures_before + MAX_FAILED
    assert len(await _events(app, "lock")) > locks_before
