"""Bound phones as the possession factor: binding, login and signing with
the phone instead of a TOTP code, the refusals, listing and revocation."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from cloudsign.appkeys import DATABASE
from cloudsign.storage.schema import events
from device_client.authenticator import SoftAuthenticator, b64url, unb64url
from device_client.client import ApiError, CloudsignClient
from tests.helpers import activated, enrolled, new_client, passed_face_check, person

PASSWORD = "correct horse battery"


async def phone_enrolled(
    client: CloudsignClient, identity: dict[str, str] | None = None
) -> tuple[SoftAuthenticator, dict[str, Any], dict[str, str]]:
    """The app's enrolment: activation code, consents, a face check, the
    phone bound, then the key with the phone as the possession factor."""
    identity = identity or person()
    await activated(client, identity)
    await client.accept_consents()
    phone = SoftAuthenticator(origin=client.base_url)
    device = await client.bind_device(
        phone, "Pixel 7", face_challenge_id=await passed_face_check(client)
    )
    assert device["status"] == "active"
    cred = await client.create_credential(
        PASSWORD, None, await passed_face_check(client), device=phone
    )
    return phone, cred, identity


async def _event_types(server: Any, owner_id: str) -> list[str]:
    async with server.app[DATABASE].read() as conn:
        rows = await conn.execute(
            select(events.c.event_type).where(events.c.owner_id == owner_id).order_by(events.c.seq)
        )
        return [r[0] for r in rows]


async def test_the_phone_replaces_the_code_for_login_and_signing(
    client: CloudsignClient, http: aiohttp.ClientSession, server: Any
) -> None:
    phone, cred, identity = await phone_enrolled(client)
    (listed,) = await client.devices()
    assert listed["name"] == "Pixel 7" and listed["last_used_at"] is not None

    # Login: the phone's assertion over the login challenge and the password.
    desktop = new_client(client.base_url, http)
    await desktop.login(identity["iin"], None, PASSWORD, device=phone)
    # No TOTP was ever set up: a code is no factor of this account.
    with pytest.raises(ApiError) as e:
        await new_client(client.base_url, http).login(identity["iin"], "123456", PASSWORD)
    assert e.value.status == 401

    # A direct authorisation with the phone in place of the code.
    digest = hashlib.sha256(b"a document").digest()
    proof = await desktop.device_proof(phone, "authorize")
    wrapped = await desktop.wrap_password(PASSWORD, "authorize")
    body = await desktop.request(
        "POST",
        f"/api/v1/me/credentials/{cred['credential_id']}/authorize",
        {
            "hashes": [base64.b64encode(digest).decode()],
            "hash_algorithm": "sha256",
            "password_key": wrapped.to_json(),
            "device": proof,
            "face_challenge_id": await passed_face_check(desktop),
        },
    )
    (signature,) = await desktop.sign_hashes(cred["credential_id"], body["SAD"], [digest])
    assert signature

    types = await _event_types(server, client.owner_id or "")
    assert "device.bind" in types and "key.use" in types


async def test_assertions_are_refused_when_replayed_foreign_or_for_another_purpose(
    client: CloudsignClient, http: aiohttp.ClientSession
) -> None:
    phone, cred, _identity = await phone_enrolled(client)
    digest = hashlib.sha256(b"x").digest()

    async def authorize(device: dict[str, Any]) -> Any:
        wrapped = await client.wrap_password(PASSWORD, "authorize")
        return await client.request(
            "POST",
            f"/api/v1/me/credentials/{cred['credential_id']}/authorize",
            {
                "hashes": [base64.b64encode(digest).decode()],
                "hash_algorithm": "sha256",
                "password_key": wrapped.to_json(),
                "device": device,
                "face_challenge_id": await passed_face_check(client),
            },
        )

    # A login challenge's assertion is no authorisation's.
    login_proof = await client.device_proof(phone, "login")
    with pytest.raises(ApiError) as e:
        await authorize(login_proof)
    assert e.value.status == 403

    # Replayed: the same assertion twice.
    proof = await client.device_proof(phone, "authorize")
    await authorize(proof)
    with pytest.raises(ApiError) as e:
        await authorize(proof)
    assert e.value.status == 403

    # Another phone (never bound) over a genuine challenge.
    stranger = SoftAuthenticator(origin=client.base_url)
    stranger.create(
        {
            "rp": {"id": phone.rp_id},
            "user": {"id": b64url(b"someone")},
            "pubKeyCredParams": [{"alg": -7, "type": "public-key"}],
            "challenge": b64url(b"c"),
        }
    )
    issued = await client.request("POST", "/api/v1/me/devices/challenge", {"purpose": "authorize"})
    foreign = {
        "challenge_id": issued["challenge_id"],
        "credential": stranger.assert_with(
            stranger.credential_ids[0], issued["options"]["challenge"], phone.rp_id
        ),
    }
    with pytest.raises(ApiError) as e:
        await authorize(foreign)
    assert e.value.status == 403

    # A tampered signature over a genuine challenge.
    issued = await client.request("POST", "/api/v1/me/devices/challenge", {"purpose": "authorize"})
    genuine = phone.get(issued["options"])
    signature = bytearray(unb64url(genuine["response"]["signature"]))
    signature[-1] ^= 1
    genuine["response"]["signature"] = b64url(bytes(signature))
    with pytest.raises(ApiError) as e:
        await authorize({"challenge_id": issued["challenge_id"], "credential": genuine})
    assert e.value.status in (400, 403)

    # Another origin (a phishing page relaying the challenge).
    issued = await client.request("POST", "/api/v1/me/devices/challenge", {"purpose": "authorize"})
    phish = SoftAuthenticator(origin="https://cloudsign.example.net")
    phish._credentials = phone._credentials  # the same key, answering another page
    with pytest.raises(ApiError) as e:
        await authorize(
            {"challenge_id": issued["challenge_id"], "credential": phish.get(issued["options"])}
        )
    assert e.value.status == 403


async def test_binding_later_needs_every_factor_and_revocation_ends_the_phone(
    client: CloudsignClient, http: aiohttp.ClientSession, server: Any
) -> None:
    totp, cred = await enrolled(client)  # a portal user: TOTP
    tablet = SoftAuthenticator(origin=client.base_url)
    # The face alone binds nothing once the account has a key.
    with pytest.raises(ApiError) as e:
        await client.bind_device(
            tablet, "tablet", face_challenge_id=await passed_face_check(client)
        )
    assert e.value.status in (400, 403)
    # Face + password + the TOTP code: bound.
    face = await passed_face_check(client)
    device = await client.bind_device(
        tablet, "tablet", face_challenge_id=face, password=PASSWORD, otp=await totp.fresh_code()
    )
    # A second phone with the first as the possession factor.
    phone = SoftAuthenticator(origin=client.base_url)
    face = await passed_face_check(client)
    await client.bind_device(
        phone, "phone", face_challenge_id=face, password=PASSWORD, other_device=tablet
    )
    assert {d["name"] for d in await client.devices()} == {"tablet", "phone"}

    # A SAD made with the tablet, still unused when the tablet is lost.
    digest = hashlib.sha256(b"pending").digest()
    live = await client.request(
        "POST",
        f"/api/v1/me/credentials/{cred['credential_id']}/authorize",
        {
            "hashes": [base64.b64encode(digest).decode()],
            "hash_algorithm": "sha256",
            "password_key": (await client.wrap_password(PASSWORD, "authorize")).to_json(),
            "device": await client.device_proof(tablet, "authorize"),
            "face_challenge_id": await passed_face_check(client),
        },
    )
    # Lost tablet: revoked with the face and the password.
    face = await passed_face_check(client)
    await client.revoke_device(device["device_id"], password=PASSWORD, face_challenge_id=face)
    statuses = {d["name"]: d["status"] for d in await client.devices()}
    assert statuses == {"tablet": "revoked", "phone": "active"}
    with pytest.raises(ApiError) as e:
        await client.sign_hashes(cred["credential_id"], live["SAD"], [digest])
    assert e.value.status == 400 and e.value.body["code"] == "invalid_sad"
    # The revoked tablet still holds its key: its assertions are refused.
    issued = await client.request("POST", "/api/v1/me/devices/challenge", {"purpose": "authorize"})
    revoked_proof = {
        "challenge_id": issued["challenge_id"],
        "credential": tablet.assert_with(
            tablet.credential_ids[0], issued["options"]["challenge"], tablet.rp_id
        ),
    }
    with pytest.raises(ApiError) as e:
        await client.request(
            "POST",
            f"/api/v1/me/credentials/{cred['credential_id']}/authorize",
            {
                "hashes": [base64.b64encode(bytes(32)).decode()],
                "hash_algorithm": "sha256",
                "password_key": (await client.wrap_password(PASSWORD, "authorize")).to_json(),
                "device": revoked_proof,
                "face_challenge_id": await passed_face_check(client),
            },
        )
    assert e.value.status == 403
    types = await _event_types(server, client.owner_id or "")
    assert types.count("device.bind") == 2 and types.count("device.revoke") == 1


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"challenge_id": "x", "credential": "not an object", "name": "a"},
        {"challenge_id": "x", "credential": {"type": "public-key"}, "name": "a"},
        {
            "challenge_id": "x",
            "name": "a",
            "credential": {
                "id": "AA",
                "rawId": "AA",
                "type": "public-key",
                "response": {"clientDataJSON": "!!", "attestationObject": "AA"},
            },
        },
        {
            "challenge_id": "x",
            "name": "a",
            "credential": {
                "id": "AA",
                "rawId": "AA",
                "type": "public-key",
                "response": {
                    "clientDataJSON": b64url(json.dumps({"challenge": 5}).encode()),
                    "attestationObject": "AA",
                },
            },
        },
    ],
)
async def test_malformed_registrations_are_clear_errors(
    client: CloudsignClient, body: dict[str, Any]
) -> None:
    await activated(client)
    with pytest.raises(ApiError) as e:
        await client.request("POST", "/api/v1/me/devices", body)
    assert e.value.status in (400, 403), e.value.body
    assert e.value.body.get("type") or e.value.body.get("title")
