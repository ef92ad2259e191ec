"""Property: no combination of factors with one missing or wrong yields a
SAD, and nothing gets signed. Hypothesis draws the combinations."""

from __future__ import annotations

import base64
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, update

from cloudsign.appkeys import DATABASE
from cloudsign.storage.schema import credentials, events
from mobile_api.client import ApiError, CloudsignClient, TotpDevice
from tests.conftest import enrolled, passed_face_check
from tests.faces import live_burst

FACE = ("ok", "missing", "other_person", "reused", "unknown_id")
OTP = ("ok", "wrong", "replayed", "missing")
PASSWORD = ("ok", "wrong", "replayed_message", "foreign_transport_key")

combinations = st.tuples(
    st.sampled_from(FACE), st.sampled_from(OTP), st.sampled_from(PASSWORD)
).filter(lambda c: c != ("ok", "ok", "ok"))


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

    async def authorize(self, face: str | None, otp: str | None, message: dict[str, str]) -> Any:
        return await self.client.request(
            "POST",
            f"/api/v1/me/credentials/{self.cred['credential_id']}/authorize",
            {
                "hashes": [base64.b64encode(os.urandom(32)).decode()],
                "password_key": message,
                "otp": otp,
                "face_challenge_id": face,
            },
        )


@pytest.fixture
async def citizen(client: CloudsignClient) -> Citizen:
    totp, cred = await enrolled(client)
    c = Citizen(client, totp, cred)
    # One fully correct authorisation first: it leaves a spent face check,
    # a used code and a consumed transport message to replay.
    c.used_face = await c.face("ok")
    c.used_code = await c.otp("ok")
    c.used_message = await c.password("ok")
    await c.authorize(c.used_face, c.used_code, c.used_message)
    return c


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    database=None,
)
@given(combo=combinations)
async def test_any_missing_or_wrong_factor_yields_nothing(
    citizen: Citizen, app: Any, combo: tuple[str, str, str]
) -> None:
    face_kind, otp_kind, password_kind = combo
    async with app[DATABASE].transaction() as conn:
        # Each drawn case starts unlocked; the lockout has its own test.
        await conn.execute(
            update(credentials)
            .where(credentials.c.id == citizen.cred["credential_id"])
            .values(failed_attempts=0, locked_until=None)
        )
    face = await citizen.face(face_kind)
    otp = await citizen.otp(otp_kind)
    message = await citizen.password(password_kind)
    with pytest.raises(ApiError) as err:
        await citizen.authorize(face, otp, message)
    assert err.value.status in (400, 403, 409), err.value.body
    assert "SAD" not in err.value.body
    async with app[DATABASE].read() as conn:
        signed = (
            await conn.execute(
                select(func.count()).where(
                    events.c.credential_id == citizen.cred["credential_id"],
                    events.c.event_type == "key.use",
                )
            )
        ).scalar_one()
    assert signed == 0
