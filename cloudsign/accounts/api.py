"""Accounts over HTTP (`/api/v1`): open an account, log in, the profile,
consent, TOTP, the key-password parameters, and deleting the account."""

from __future__ import annotations

import base64
from typing import Any

from aiohttp import web

from cloudsign.accounts.access import current_owner, login_fields
from cloudsign.accounts.consents import current_texts
from cloudsign.accounts.service import Session
from cloudsign.appkeys import ACCOUNTS, FACES
from cloudsign.ca import Identity
from cloudsign.web.body import read_json

routes = web.RouteTableDef()

#: Answers that carry a token or a seed are never cached.
NO_STORE = {"Cache-Control": "no-store"}


def session_json(session: Session) -> dict[str, str]:
    return {
        "owner_id": session.owner_id,
        "access_token": session.access_token,
        "token_type": "Bearer",
    }


@routes.post("/api/v1/owners")
async def create_owner(request: web.Request) -> web.Response:
    identity = Identity.from_json(await read_json(request))
    session = await request.app[ACCOUNTS].create_owner(identity)
    return web.json_response(session_json(session), status=201, headers=NO_STORE)


@routes.post("/api/v1/sessions")
async def login(request: web.Request) -> web.Response:
    iin, otp = login_fields(await read_json(request))
    session = await request.app[ACCOUNTS].login(iin, otp)
    return web.json_response(session_json(session), headers=NO_STORE)


@routes.get("/api/v1/me")
async def me(request: web.Request) -> web.Response:
    owner = await current_owner(request)
    accepted = await request.app[ACCOUNTS].consents(owner.id)
    body: dict[str, Any] = {
        "owner_id": owner.id,
        "kind": owner.kind,
        "iin": owner.iin,
        "full_name": owner.full_name,
        "email": owner.email,
        "totp_confirmed": owner.totp_confirmed,
        "face_enrolled": await request.app[FACES].enrolled(owner.id),
        "consents": [
            {"kind": c.kind, "version": c.version, "accepted_at": c.accepted_at.isoformat()}
            for c in accepted
        ],
    }
    return web.json_response(body)


@routes.delete("/api/v1/me")
async def delete_account(request: web.Request) -> web.Response:
    owner = await current_owner(request)
    body = await read_json(request)
    await request.app[ACCOUNTS].delete_account(owner, body.otp())
    return web.json_response({"deleted": True})


@routes.get("/api/v1/consent-texts")
async def consent_texts(request: web.Request) -> web.Response:
    return web.json_response(
        [
            {
                "kind": t.kind,
                "version": t.version,
                "language": t.language,
                "sha256": t.sha256,
                "text": t.text,
            }
            for t in current_texts()
        ]
    )


@routes.post("/api/v1/me/consents")
async def record_consent(request: web.Request) -> web.Response:
    owner = await current_owner(request)
    body = await read_json(request)
    await request.app[ACCOUNTS].record_consent(
        owner,
        body.text("kind", max_len=64),
        body.text("version", max_len=16),
        body.text("sha256", max_len=64),
    )
    return web.json_response({"recorded": True}, status=201)


@routes.post("/api/v1/me/totp")
async def begin_totp(request: web.Request) -> web.Response:
    owner = await current_owner(request)
    uri = await request.app[ACCOUNTS].begin_totp(owner)
    # The URI carries the seed: shown once, never cached.
    return web.json_response({"provisioning_uri": uri}, status=201, headers=NO_STORE)


@routes.post("/api/v1/me/totp/confirm")
async def confirm_totp(request: web.Request) -> web.Response:
    owner = await current_owner(request)
    body = await read_json(request)
    await request.app[ACCOUNTS].confirm_totp(owner, body.otp())
    return web.json_response({"confirmed": True})


@routes.get("/api/v1/me/key-params")
async def key_params(request: web.Request) -> web.Response:
    owner = await current_owner(request)
    params = await request.app[ACCOUNTS].key_params(owner.id)
    return web.json_response(
        {
            "algorithm": "argon2id",
            "salt": base64.b64encode(params.salt).decode(),
            "time_cost": params.time_cost,
            "memory_kib": params.memory_kib,
            "parallelism": params.parallelism,
            "hash_len": params.hash_len,
        }
    )
