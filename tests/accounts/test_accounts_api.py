"""Accounts over real HTTP against the real SoftHSM2 token, on both
databases: consents in three languages, malformed bodies, access control,
the two-factor login, and deletion with every factor."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from cloudsign.accounts.tables import owners
from cloudsign.appkeys import DATABASE
from cloudsign.ca.identity import check_digit
from cloudsign.credentials.tables import credentials
from cloudsign.faces.tables import face_templates
from cloudsign.storage.schema import events
from device_client.client import ApiError, CloudsignClient
from tests.helpers import activated, enrolled, make_iin, new_client, passed_face_check, person

PASSWORD = "correct horse battery"

WRONG_CHECK_DIGIT_IIN = "90010131234" + str(((check_digit("90010131234") or 0) + 1) % 10)


def _pem_chain(tmp_path: Path, cred: dict[str, Any]) -> tuple[Path, Path, Path]:
    leaf = tmp_path / "leaf.pem"
    issuing = tmp_path / "issuing.pem"
    root = tmp_path / "root.pem"
    leaf.write_text(cred["certificate"])
    issuing.write_text(cred["chain"][0])
    root.write_text(cred["chain"][1])
    return leaf, issuing, root


async def test_consent_must_match_current_text(client: CloudsignClient) -> None:
    await activated(client)
    with pytest.raises(ApiError) as err:
        await client.request(
            "POST",
            "/api/v1/me/consents",
            {"kind": "personal_data", "version": "1", "sha256": "0" * 64},
        )
    assert err.value.status == 409
    profile = await client.request("GET", "/api/v1/me")
    assert profile["consents"] == []


@pytest.mark.parametrize("language", ["kk", "ru", "en"])
async def test_consents_are_read_and_given_in_three_languages(
    client: CloudsignClient, language: str, app: Any
) -> None:
    texts = await client.request("GET", f"/api/v1/consent-texts?language={language}")
    assert {t["kind"] for t in texts} == {"personal_data", "cloud_key_storage"}
    for t in texts:
        assert t["language"] == language
        assert hashlib.sha256(t["text"].encode()).hexdigest() == t["sha256"]
    others = {
        t["sha256"]
        for lang in {"kk", "ru", "en"} - {language}
        for t in await client.request("GET", f"/api/v1/consent-texts?language={lang}")
    }
    assert not {t["sha256"] for t in texts} & others  # each translation is its own text
    await activated(client)
    assert sorted(await client.accept_consents(language)) == sorted(t["kind"] for t in texts)
    profile = await client.request("GET", "/api/v1/me")
    assert {c["language"] for c in profile["consents"]} == {language}
    async with app[DATABASE].read() as conn:
        data = [
            r[0]
            for r in (
                await conn.execute(
                    select(events.c.data).where(
                        events.c.owner_id == client.owner_id,
                        events.c.event_type == "consent.record",
                    )
                )
            ).all()
        ]
    assert {d["language"] for d in data} == {language}
    assert {d["text_sha256"] for d in data} == {t["sha256"] for t in texts}
    # A text's hash in one language is no consent in another.
    with pytest.raises(ApiError) as err:
        await client.request("GET", "/api/v1/consent-texts?language=de")
    assert err.value.status == 400


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b"{not json", "application/json", 400, "invalid_field"),
        (b"[1, 2]", "application/json", 400, "invalid_field"),
        (b"\xff\xfe", "application/json", 400, "invalid_field"),
        (b"iin=1", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    ],
)
async def test_malformed_bodies(
    http: aiohttp.ClientSession,
    base_url: str,
    body: bytes,
    content_type: str,
    status: int,
    code: str,
) -> None:
    async with http.post(
        f"{base_url}/api/v1/activations", data=body, headers={"Content-Type": content_type}
    ) as resp:
        assert resp.status == status
        assert resp.content_type == "application/problem+json"
        assert (await resp.json(content_type=None))["code"] == code


async def test_oversized_body_is_413_and_server_keeps_serving(
    http: aiohttp.ClientSession, base_url: str, server: TestServer
) -> None:
    big = b'{"x": "' + b"a" * (2 << 20) + b'"}'
    async with http.post(
        f"{base_url}/api/v1/sessions", data=big, headers={"Content-Type": "application/json"}
    ) as resp:
        assert resp.status == 413
        assert (await resp.json(content_type=None))["code"] == "payload_too_large"
    async with http.get(f"{base_url}/healthz") as resp:
        assert resp.status == 200


async def test_unauthenticated_and_foreign_access(
    client: CloudsignClient, http: aiohttp.ClientSession, base_url: str
) -> None:
    anonymous = new_client(base_url, http)
    with pytest.raises(ApiError) as err:
        await anonymous.request("GET", "/api/v1/me/credentials")
    assert err.value.status == 401
    anonymous.access_token = "forged-token"
    with pytest.raises(ApiError) as err:
        await anonymous.request("GET", "/api/v1/me")
    assert err.value.status == 401

    _, cred_a = await enrolled(client)
    other = new_client(base_url, http)
    totp_b, _ = await enrolled(other, face="biden_1.jpg", check_face="biden_2.jpg")
    with pytest.raises(ApiError) as err:
        await other.delete_credential(
            cred_a["credential_id"],
            password=PASSWORD,
            face_challenge_id=await passed_face_check(other, "biden_2.jpg"),
            otp=await totp_b.fresh_code(),
        )
    assert err.value.status == 404
    assert cred_a["credential_id"] not in [c["credential_id"] for c in await other.credentials()]
    assert (await client.credentials())[0]["status"] == "active"


async def _login_failures(app: Any) -> int:
    async with app[DATABASE].read() as conn:
        rows = (
            await conn.execute(select(events.c.data).where(events.c.event_type == "auth.failure"))
        ).all()
    return sum(1 for (data,) in rows if data.get("factor") == "login")


async def test_login_takes_the_code_and_the_password(
    client: CloudsignClient, http: aiohttp.ClientSession, base_url: str, app: Any
) -> None:
    identity = person()
    totp, _ = await enrolled(client, identity=identity)
    again = new_client(base_url, http)
    failures_before = await _login_failures(app)
    for otp, password in (
        ("000000", PASSWORD),  # wrong code
        (await totp.fresh_code(), "wrong password"),  # right code, wrong password
    ):
        with pytest.raises(ApiError) as err:
            await again.login(identity["iin"], otp, password)
        assert err.value.status == 401
        assert again.access_token is None
    # A TOTP code alone is no login: the password proof is required.
    with pytest.raises(ApiError) as err:
        await again.request(
            "POST", "/api/v1/sessions", {"iin": identity["iin"], "otp": await totp.fresh_code()}
        )
    assert err.value.status == 400
    await again.login(identity["iin"], await totp.fresh_code(), PASSWORD)
    assert again.owner_id == client.owner_id
    assert len(await again.credentials()) == 1
    assert await _login_failures(app) == failures_before + 2


async def test_login_challenge_is_the_same_for_unknown_iins(
    http: aiohttp.ClientSession, base_url: str, client: CloudsignClient
) -> None:
    """The challenge of an unknown IIN looks like a customer's: same keys,
    same status, stable key parameters; logging in fails the same way."""
    identity = person()
    await enrolled(client, identity=identity)
    unknown = make_iin()

    async def challenge(iin: str) -> tuple[int, dict[str, Any]]:
        async with http.post(f"{base_url}/api/v1/sessions/challenge", json={"iin": iin}) as r:
            return r.status, await r.json()

    known_status, known = await challenge(identity["iin"])
    unknown_status, first = await challenge(unknown)
    _, second = await challenge(unknown)
    assert known_status == unknown_status == 201
    assert set(known) == set(first)
    assert set(known["key_params"]) == set(first["key_params"])
    assert {k: v for k, v in known["key_params"].items() if k != "salt"} == {
        k: v for k, v in first["key_params"].items() if k != "salt"
    }
    assert first["key_params"] == second["key_params"]  # stable, not random per call
    assert first["key_params"]["salt"] != known["key_params"]["salt"]
    stranger = new_client(base_url, http)
    with pytest.raises(ApiError) as err_unknown:
        await stranger.login(unknown, "123456", PASSWORD)
    with pytest.raises(ApiError) as err_known:
        await stranger.login(identity["iin"], "123456", PASSWORD)
    assert err_unknown.value.status == err_known.value.status == 401
    assert err_unknown.value.body == err_known.value.body


async def test_no_password_recovery_route(app: Any) -> None:
    """Rule 11: a lost password is not recovered (re-proofing makes a new key)."""
    paths = [r.resource.canonical for r in app.router.routes() if r.resource is not None]
    assert not [p for p in paths if any(w in p for w in ("recover", "forgot", "password/reset"))]


async def test_owner_rows_hold_no_plain_secrets(client: CloudsignClient, app: Any) -> None:
    await activated(client)
    await client.accept_consents()
    totp = await client.setup_totp()
    seed = totp.totp.secret
    async with app[DATABASE].read() as conn:
        row = (
            (await conn.execute(select(owners).where(owners.c.id == client.owner_id)))
            .mappings()
            .one()
        )
    dump = repr(dict(row)).encode()
    assert seed.encode() not in dump
    assert base64.b32decode(seed) not in row["totp_sealed"]


async def test_account_deletion_wipes_secrets_and_keeps_the_trail(
    client: CloudsignClient, app: Any
) -> None:
    totp, cred = await enrolled(client)
    # The code alone, or the code and the password, delete nothing.
    for factors in (
        {"password": None, "otp": await totp.fresh_code(), "face_challenge_id": None},
        {"password": PASSWORD, "otp": await totp.fresh_code(), "face_challenge_id": None},
        {
            "password": None,
            "face_challenge_id": await passed_face_check(client),
            "otp": await totp.fresh_code(),
        },
    ):
        with pytest.raises(ApiError) as err:
            await client.delete_account(**factors)
        assert err.value.status in (400, 403)
    assert (await client.request("GET", "/api/v1/me"))["status"] == "active"
    await client.delete_account(
        password=PASSWORD,
        face_challenge_id=await passed_face_check(client),
        otp=await totp.fresh_code(),
    )
    with pytest.raises(ApiError) as err:
        await client.request("GET", "/api/v1/me")
    assert err.value.status == 401  # tokens revoked with the account
    async with app[DATABASE].read() as conn:
        row = (
            (await conn.execute(select(owners).where(owners.c.id == client.owner_id)))
            .mappings()
            .one()
        )
        template = (
            await conn.execute(
                select(face_templates.c.template_sealed).where(
                    face_templates.c.owner_id == client.owner_id
                )
            )
        ).first()
        cred_row = (
            await conn.execute(
                select(credentials.c.status, credentials.c.key_blob).where(
                    credentials.c.id == cred["credential_id"]
                )
            )
        ).one()
        kinds = (
            (
                await conn.execute(
                    select(events.c.event_type).where(events.c.owner_id == client.owner_id)
                )
            )
            .scalars()
            .all()
        )
    assert row["status"] == "deleted"
    assert template is None and row["totp_sealed"] is None
    assert cred_row == ("deleted", None)
    assert {"key.create", "key.destroy", "cert.revoke", "account.delete"} <= set(kinds)
