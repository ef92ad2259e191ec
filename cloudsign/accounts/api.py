"""Accounts over HTTP (`/api/v1`): the profile, consent, TOTP and the
key-password parameters. Accounts are opened by identity proofing
(cloudsign/proofing); logging in and deleting need the factors
(cloudsign/lifecycle)."""

from __future__ import annotations

import base64
from typing import Any

from aiohttp import web

from cloudsign.accounts.access import current_owner
from cloudsign.accounts.consents import LANGUAGES, current_texts
from cloudsign.appkeys import ACCOUNTS, FACES
from cloudsign.errors import ValidationError
from cloudsign.web.auth import owner_token
from cloudsign.web.body import read_json
from cloudsign.web.params import query_text

routes = web.RouteTableDef()

#: Answers that carry a token or a seed are never cached.
NO_STORE = {"Cache-Control": "no-store"}


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
        "status": owner.status,
        "session": owner.scope,
        "totp_confirmed": owner.totp_confirmed,
        "face_enrolled": await request.app[FACES].enrolled(owner.id),
        "consents": [
            {
                "kind": c.kind,
                "version": c.version,
                "language": c.language,
                "accepted_at": c.accepted_at.isoformat(),
            }
            for c in accepted
        ],
    }
    return web.json_response(body)


@routes.get("/api/v1/consent-texts")
async def consent_texts(request: web.Request) -> web.Response:
    """The texts to consent to, in `?language=kk|ru|en` (default en)."""
    language = query_text(request, "language", max_len=2) or "en"
    if language not in LANGUAGES:
        raise ValidationError("language must be kk, ru or en", field="language")
    return web.json_response(
        [
            {
                "kind": t.kind,
                "version": t.version,
                "language": t.language,
                "sha256": t.sha256,
                "text": t.text,
            }
            for t in current_texts(language)
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
        body.choice("language", {lang: lang for lang in LANGUAGES}, default="en"),
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


@routes.delete("/api/v1/sessions/current")
async def logout(request: web.Request) -> web.Response:
    """End the Bearer session: its token stops working now, not at expiry."""
    await current_owner(request)
    await request.app[ACCOUNTS].revoke_token(owner_token(request))
    return web.json_response({"logged_out": True})
