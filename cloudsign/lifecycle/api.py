"""The account's lifecycle over HTTP: logging in (two factors), and every
change that needs all three factors (deleting, replacing, re-keying)."""

from __future__ import annotations

import base64
from typing import Any, Final

from aiohttp import web

from cloudsign.accounts import Possession, Session, current_owner, possession_from
from cloudsign.appkeys import CA, LIFECYCLE
from cloudsign.ca import to_pem
from cloudsign.credentials import DEFAULT_ALGORITHM, parse_transport_message, transport_key_json
from cloudsign.errors import ValidationError
from cloudsign.lifecycle.service import Factors, LoginChallenge
from cloudsign.web.body import read_json
from cloudsign.web.inputs import Fields
from cloudsign.web.params import path_id

routes = web.RouteTableDef()

MAX_FACE_IMAGES: Final = 3
MAX_IMAGE_BYTES: Final = 8 << 20
NO_STORE: Final = {"Cache-Control": "no-store"}


def factors_from(body: Fields) -> Factors:
    """`face_challenge_id`, `otp` and `password_key` of a request."""
    return Factors(
        face_challenge_id=body.optional_text("face_challenge_id", max_len=64),
        otp=possession_from(body),
        password_key=(
            parse_transport_message(body.obj("password_key")) if "password_key" in body else None
        ),
    )


def challenge_json(challenge: LoginChallenge) -> dict[str, Any]:
    params = challenge.key_params
    device = {}
    if challenge.device_challenge is not None:
        challenge_id, raw = challenge.device_challenge
        device = {
            "device_challenge": {
                "challenge_id": challenge_id,
                "challenge": base64.urlsafe_b64encode(raw).rstrip(b"=").decode(),
            }
        }
    return {
        **transport_key_json(challenge.transport_key),
        **device,
        "key_params": {
            "algorithm": "argon2id",
            "salt": base64.b64encode(params.salt).decode(),
            "time_cost": params.time_cost,
            "memory_kib": params.memory_kib,
            "parallelism": params.parallelism,
            "hash_len": params.hash_len,
        },
    }


def login_fields(body: Fields) -> tuple[str, Possession, Any]:
    """`{iin, otp | device, password_key}` of a login (the API's and the portal's)."""
    body.only({"iin", "otp", "device", "password_key"})
    possession = possession_from(body)
    if possession is None:
        raise ValidationError("otp (or device) is required", field="otp")
    return (
        body.digits("iin", min_len=12),
        possession,
        parse_transport_message(body.obj("password_key")),
    )


def session_json(session: Session) -> dict[str, str]:
    return {
        "owner_id": session.owner_id,
        "access_token": session.access_token,
        "token_type": "Bearer",
    }


@routes.post("/api/v1/sessions/challenge")
async def login_challenge(request: web.Request) -> web.Response:
    body = await read_json(request)
    body.only({"iin"})
    challenge = await request.app[LIFECYCLE].login_challenge(body.digits("iin", min_len=12))
    return web.json_response(challenge_json(challenge), status=201, headers=NO_STORE)


@routes.post("/api/v1/sessions")
async def login(request: web.Request) -> web.Response:
    iin, otp, password_key = login_fields(await read_json(request))
    session = await request.app[LIFECYCLE].login(iin, otp, password_key)
    return web.json_response(session_json(session), headers=NO_STORE)


@routes.delete("/api/v1/me")
async def delete_account(request: web.Request) -> web.Response:
    owner = await current_owner(request)
    body = await read_json(request)
    await request.app[LIFECYCLE].delete_account(owner, factors_from(body))
    return web.json_response({"deleted": True})


@routes.delete("/api/v1/me/credentials/{credential_id}")
async def delete_credential(request: web.Request) -> web.Response:
    owner = await current_owner(request)
    credential_id = path_id(request, "credential_id")
    body = await read_json(request)
    await request.app[LIFECYCLE].delete_credential(owner, credential_id, factors_from(body))
    return web.json_response({"deleted": True})


@routes.put("/api/v1/me/face")
async def replace_face(request: web.Request) -> web.Response:
    """`{images: [base64 JPEG/PNG], face_challenge_id, otp, password_key}`:
    the face check must have matched the current template."""
    owner = await current_owner(request)
    body = await read_json(request, MAX_FACE_IMAGES * MAX_IMAGE_BYTES * 4 // 3 + 4096)
    images = body.b64_list("images", max_items=MAX_FACE_IMAGES, max_bytes=MAX_IMAGE_BYTES)
    done = await request.app[LIFECYCLE].replace_face(owner, images, factors_from(body))
    return web.json_response(
        {"replaced": True, "images": done.images, "enrolled_at": done.enrolled_at.isoformat()}
    )


@routes.post("/api/v1/me/credentials/{credential_id}/password")
async def change_password(request: web.Request) -> web.Response:
    owner = await current_owner(request)
    credential_id = path_id(request, "credential_id")
    body = await read_json(request)
    new_key = parse_transport_message(body.obj("new_password_key"))
    await request.app[LIFECYCLE].change_password(owner, credential_id, factors_from(body), new_key)
    return web.json_response({"changed": True})


@routes.post("/api/v1/me/credentials/{credential_id}/rekey")
async def rekey(request: web.Request) -> web.Response:
    owner = await current_owner(request)
    credential_id = path_id(request, "credential_id")
    body = await read_json(request)
    new_key = parse_transport_message(body.obj("new_password_key"))
    algorithm = body.optional_text("algorithm", max_len=32) or DEFAULT_ALGORITHM
    issued = await request.app[LIFECYCLE].rekey(
        owner, credential_id, factors_from(body), new_key, algorithm
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


@routes.post("/api/v1/me/totp/reset")
async def reset_totp(request: web.Request) -> web.Response:
    owner = await current_owner(request)
    body = await read_json(request)
    uri = await request.app[LIFECYCLE].reset_totp(owner, factors_from(body))
    return web.json_response({"provisioning_uri": uri}, status=201, headers=NO_STORE)
