"""Enrolment over real HTTP against the real SoftHSM2 token, on both databases."""

from __future__ import annotations

import base64
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
from tests.helpers import enrolled, new_client, person

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
    await client.create_account(person())
    with pytest.raises(ApiError) as err:
        await client.request(
            "POST",
            "/api/v1/me/consents",
            {"kind": "personal_data", "version": "1", "sha256": "0" * 64},
        )
    assert err.value.status == 409
    profile = await client.request("GET", "/api/v1/me")
    assert profile["consents"] == []


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
        f"{base_url}/api/v1/owners", data=body, headers={"Content-Type": content_type}
    ) as resp:
        assert resp.status == status
        assert resp.content_type == "application/problem+json"
        assert (await resp.json(content_type=None))["code"] == code


async def test_oversized_body_is_413_and_server_keeps_serving(
    http: aiohttp.ClientSession, base_url: str, server: TestServer
) -> None:
    big = b'{"x": "' + b"a" * (2 << 20) + b'"}'
    async with http.post(
        f"{base_url}/api/v1/owners", data=big, headers={"Content-Type": "application/json"}
    ) as resp:
        assert resp.status == 413
        assert (await resp.json(content_type=None))["code"] == "payload_too_large"
    async with http.get(f"{base_url}/healthz") as resp:
        assert resp.status == 200


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"iin": WRONG_CHECK_DIGIT_IIN}, "iin"),
        ({"iin": "90010131234"}, "iin"),
        ({"iin": "901301300001"}, "iin"),
        ({"email": "not-an-email"}, "email"),
        ({"surname": ""}, "surname"),
        ({"kind": "robot"}, "kind"),
    ],
)
async def test_bad_identity_is_400_with_field(
    client: CloudsignClient, override: dict[str, str], field: str
) -> None:
    data = person(**override)
    with pytest.raises(ApiError) as err:
        await client.create_account(data)
    assert err.value.status == 400
    assert err.value.body["field"] == field


async def test_duplicate_account_is_409(client: CloudsignClient) -> None:
    data = person()
    await client.create_account(data)
    with pytest.raises(ApiError) as err:
        await client.create_account(data)
    assert err.value.status == 409


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
    await other.create_account(person())
    await other.accept_consents()
    totp_b = await other.setup_totp()
    with pytest.raises(ApiError) as err:
        await other.delete_credential(cred_a["credential_id"], await totp_b.fresh_code())
    assert err.value.status == 404
    assert [c["credential_id"] for c in await other.credentials()] == []
    assert (await client.credentials())[0]["status"] == "active"


async def test_login_with_iin_and_otp(
    client: CloudsignClient, http: aiohttp.ClientSession, base_url: str
) -> None:
    identity = person()
    totp, _ = await enrolled(client, identity=identity)
    again = new_client(base_url, http)
    with pytest.raises(ApiError) as err:
        await again.login(identity["iin"], "000000")
    assert err.value.status == 401
    await again.login(identity["iin"], await totp.fresh_code())
    assert again.owner_id == client.owner_id
    assert len(await again.credentials()) == 1


async def test_no_password_recovery_route(app: Any) -> None:
    paths = [r.resource.canonical for r in app.router.routes() if r.resource is not None]
    assert not [p for p in paths if any(w in p for w in ("recover", "reset", "forgot"))]


async def test_owner_rows_hold_no_plain_secrets(client: CloudsignClient, app: Any) -> None:
    await client.create_account(person())
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
    await client.request("DELETE", "/api/v1/me", {"otp": await totp.fresh_code()})
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
