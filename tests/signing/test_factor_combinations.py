"""Property, walked exhaustively: no combination of factors with one missing
or wrong yields a SAD, and whatever the refused authorisation answered,
signing with it produces nothing.

Every (face, OTP, password) combination but the all-correct one is tried on
one enrolled citizen per database; each case starts with its counters
cleared (the lockout has its own test), then tries to sign with what the authorisation returned.
"""

from __future__ import annotations

import base64
import itertools
import os
from typing import Any

import pytest
from sqlalchemy import func, select

from cloudsign.appkeys import DATABASE, GUARD, LIMITS
from cloudsign.storage.schema import events
from device_client.client import ApiError, CloudsignClient, TotpDevice
from tests.face_images import live_burst
from tests.helpers import enrolled, new_client, passed_face_check

FACE = ("ok", "missing", "other_person", "reused", "unknown_id")
OTP = ("ok", "wrong", "replayed", "missing")
PASSWORD = ("ok", "wrong", "replayed_message", "foreign_transport_key")
COMBINATIONS = [c for c in itertools.product(FACE, OTP, PASSWORD) if c != ("ok", "ok", "ok")]


class Citizen:
    """One enrolled citizen and the leftovers that make replays possible."""

    def __init__(self, client: CloudsignClient, totp: TotpDevice, cred: dict[str, Any]) -> None:
        self.client = client
        self.totp = totp
        self.cred = cred
        self.used_face: str | None = None
        self.used_code: str | None = None
        self.used_message: dict[str, str] | None = None

    async def face(self, kind: str) -> str | None:
        if kind == "missing":
            return None
        if kind == "unknown_id":
            return "00000000-0000-0000-0000-000000000000"
        if kind == "reused" and self.used_face:
            return self.used_face
        if kind == "other_person":
            ch = await self.client.face_challenge()
            with pytest.raises(ApiError):
                await self.client.send_burst(
                    ch["challenge_id"], live_burst("biden_2.jpg", ch["actions"])
                )
            return str(ch["challenge_id"])
        return await passed_face_check(self.client)

    async def otp(self, kind: str) -> str | None:
        if kind == "missing":
            return None
        if kind == "replayed" and self.used_code:
            return self.used_code
        code = await self.totp.fresh_code()
        if kind == "wrong":
            return f"{(int(code) + 500_000) % 1_000_000:06d}"
        return code

    async def password(self, kind: str) -> dict[str, str]:
        if kind == "replayed_message" and self.used_message:
            return self.used_message
        wrapped = await self.client.wrap_password(
            "wrong password" if kind == "wrong" else "correct horse battery", "authorize"
        )
        message = wrapped.to_json()
        if kind == "foreign_transport_key":
            other = await self.client.wrap_password("correct horse battery", "authorize")
            message["transport_key_id"] = other.transport_key_id
        return message

    def _path(self, action: str) -> str:
        return f"/api/v1/me/credentials/{self.cred['credential_id']}/{action}"

    async def authorize(
        self, digest: bytes, face: str | None, otp: str | None, message: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        """The authorisation's status and body, refused or not."""
        body = {
            "hashes": [base64.b64encode(digest).decode()],
            "password_key": message,
            "otp": otp,
            "face_challenge_id": face,
        }
        try:
            return 200, await self.client.request("POST", self._path("authorize"), body)
        except ApiError as e:
            return e.status, e.body

    async def sign(self, digest: bytes, sad: object) -> tuple[int, dict[str, Any]]:
        body = {"hashes": [base64.b64encode(digest).decode()], "SAD": sad}
        try:
            return 200, await self.client.request("POST", self._path("sign-hashes"), body)
        except ApiError as e:
            return e.status, e.body


@pytest.fixture(scope="module")
async def citizen(base_url: str) -> Any:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        client = new_client(base_url, http)
        totp, cred = await enrolled(client)
        c = Citizen(client, totp, cred)
        # One fully correct authorisation first: it leaves a spent face check,
        # a used code and a consumed transport message to replay.
        c.used_face = await c.face("ok")
        c.used_code = await c.otp("ok")
        c.used_message = await c.password("ok")
        status, body = await c.authorize(os.urandom(32), c.used_face, c.used_code, c.used_message)
        assert status == 200 and "SAD" in body, body
        yield c


async def _signatures(app: Any, credential_id: str) -> int:
    async with app[DATABASE].read() as conn:
        return int(
            (
                await conn.execute(
                    select(func.count()).where(
                        events.c.credential_id == credential_id,
                        events.c.event_type == "key.use",
                    )
                )
            ).scalar_one()
        )


@pytest.mark.parametrize(("face_kind", "otp_kind", "password_kind"), COMBINATIONS)
async def test_any_missing_or_wrong_factor_yields_nothing(
    citizen: Citizen, app: Any, face_kind: str, otp_kind: str, password_kind: str
) -> None:
    limits = app[LIMITS]
    await app[GUARD].clear(limits.password, citizen.cred["credential_id"])
    await app[GUARD].clear(limits.otp, str(citizen.client.owner_id))
    await app[GUARD].clear(limits.face, str(citizen.client.owner_id))
    before = await _signatures(app, citizen.cred["credential_id"])
    digest = os.urandom(32)
    face = await citizen.face(face_kind)
    otp = await citizen.otp(otp_kind)
    message = await citizen.password(password_kind)
    status, answer = await citizen.authorize(digest, face, otp, message)
    assert status in (400, 403, 409), answer
    assert "SAD" not in answer
    # Whatever came back, it signs nothing (nor does the last good SAD's shape).
    signed_status, signed = await citizen.sign(digest, answer.get("SAD"))
    assert signed_status >= 400, signed
    assert await _signatures(app, citizen.cred["credential_id"]) == before
