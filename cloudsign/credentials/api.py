"""Credentials over HTTP: one-time transport keys, the cloud key and
certificate that finish an enrolment, the list of an owner's credentials.
Destroying or replacing a key needs every factor (cloudsign/lifecycle)."""

from __future__ import annotations

import base64
from typing import Final

from aiohttp import web

from cloudsign.accounts import current_owner, possession_from
from cloudsign.appkeys import CA, CREDENTIALS, GUARD, LIMITS, TRANSPORT_KEYS
from cloudsign.ca import to_pem
from cloudsign.credentials.transport import (
    KDF,
    KEY_AGREEMENT,
    PURPOSES,
    WRAP,
    TransportKey,
    parse_transport_message,
)
from cloudsign.web.body import read_json

routes = web.RouteTableDef()

DEFAULT_ALGORITHM: Final = "ec-p256"


#: What an owner may ask a transport key for (logins have their own challenge).
OWNER_PURPOSES: Final = {p: p for p in sorted(PURPOSES - {"login"})}


def transport_key_json(key: TransportKey) -> dict[str, str]:
    return {
        "transport_key_id": key.id,
        "public_key": base64.b64encode(key.public_key).decode(),
        "expires_at": key.expires_at.isoformat(),
        "key_agreement": KEY_AGREEMENT,
        "kdf": KDF,
        "wrap": WRAP,
    }


@routes.post("/api/v1/me/transport-keys")
async def new_transport_key(request: web.Request) -> web.Response:
    owner = await current_owner(request)
    body = await read_json(request)
    purpose = body.choice("purpose", OWNER_PURPOSES)
    await request.app[GUARD].counted(
        [(request.app[LIMITS].transport_keys, owner.id)], factor="transport-key"
    )
    key = await request.app[TRANSPORT_KEYS].issue(owner.id, purpose)
    return web.json_response(transport_key_json(key), status=201)


@routes.get("/api/v1/me/credentials")
async def list_credentials(request: web.Request) -> web.Response:
    owner = await current_owner(request)
    return web.json_response(
        [
            {
                "credential_id": c.id,
                "status": c.status,
                "algorithm": c.algorithm,
                "created_at": c.created_at.isoformat(),
                "deleted_at": c.deleted_at.isoformat() if c.deleted_at else None,
                "certificate_serial": c.certificate_serial,
                "certificate_status": c.certificate_status,
                "certificate_not_after": (
                    c.certificate_not_after.isoformat() if c.certificate_not_after else None
                ),
            }
            for c in await request.app[CREDENTIALS].summaries(owner.id)
        ]
    )


@routes.post("/api/v1/me/credentials")
async def create_credential(request: web.Request) -> web.Response:
    owner = await current_owner(request)
    body = await read_json(request)
    message = parse_transport_message(body.obj("password_key"))
    algorithm = body.optional_text("algorithm", max_len=32) or DEFAULT_ALGORITHM
    issued = await request.app[CREDENTIALS].create(
        owner,
        algorithm,
        message,
        possession_from(body),
        body.optional_text("face_challenge_id", max_len=64),
    )
    return web.json_response(
        {
            "credential_id": issued.id,
            "algorithm": issued.algorithm.value,
            "certificate": to_pem(issued.certificate),
            "certificate_serial": issued.serial,
            "chain": [to_pem(c) for c in request.app[CA].chain],
        },
        status=201,
    )
