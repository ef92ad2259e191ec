"""Enrolment API (JSON over HTTP, `/api/v1`): what the portal and the mobile
app call to open an account and create the citizen's cloud key."""

from __future__ import annotations

from aiohttp import web

from cloudsign.appkeys import ENROLMENT
from cloudsign.ca.identity import Identity
from cloudsign.consents import current_texts
from cloudsign.enrolment import TRANSPORT_PURPOSES, Owner, parse_transport_message
from cloudsign.portal.session import session_token as portal_session_token
from cloudsign.web.auth import bearer_token
from cloudsign.web.body import read_json
from cloudsign.web.inputs import Fields
from cloudsign.web.params import path_id

routes = web.RouteTableDef()


def otp_field(body: Fields, key: str = "otp") -> str | None:
    """A one-time code: 6 to 8 ASCII digits, or absent (the service refuses
    a missing code as a failed factor)."""
    return body.optional_digits(key, min_len=6, max_len=8)


async def current_owner(request: web.Request) -> Owner:
    """A Bearer token (API clients), else the portal's session cookie, which
    on unsafe methods must come with its CSRF header (cloudsign.portal.session)."""
    if "Authorization" not in request.headers:
        token = portal_session_token(request)
        if token is not None:
            return await request.app[ENROLMENT].authenticate(token)
    return await request.app[ENROLMENT].authenticate(bearer_token(request))


@routes.post("/api/v1/owners")
async def create_owner(request: web.Request) -> web.Response:
    identity = Identity.from_json(await read_json(request))
    owner_id, token = await request.app[ENROLMENT].create_owner(identity)
    return web.json_response(
        {"owner_id": owner_id, "access_token": token, "token_type": "Bearer"}, status=201
    )


@routes.post("/api/v1/sessions")
async def login(request: web.Request) -> web.Response:
    body = await read_json(request)
    body.only({"iin", "otp"})
    owner_id, token = await request.app[ENROLMENT].login(
        body.digits("iin", min_len=12), body.digits("otp", min_len=6, max_len=8)
    )
    return web.json_response({"owner_id": owner_id, "access_token": token, "token_type": "Bearer"})


@routes.get("/api/v1/me")
async def me(request: web.Request) -> web.Response:
    owner = await current_owner(request)
    return web.json_response(await request.app[ENROLMENT].profile(owner))


@routes.delete("/api/v1/me")
async def delete_account(request: web.Request) -> web.Response:
    owner = await current_owner(request)
    body = await read_json(request)
    await request.app[ENROLMENT].delete_account(owner, otp_field(body))
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
    await request.app[ENROLMENT].record_consent(
        owner,
        body.text("kind", max_len=64),
        body.text("version", max_len=16),
        body.text("sha256", max_len=64),
    )
    return web.json_response({"recorded": True}, status=201)


@routes.post("/api/v1/me/totp")
async def begin_totp(request: web.Request) -> web.Response:
    owner = await current_owner(request)
    uri = await request.app[ENROLMENT].begin_totp(owner)
    # The URI carries the seed: shown once, never cached.
    return web.json_response(
        {"provisioning_uri": uri}, status=201, headers={"Cache-Control": "no-store"}
    )


@routes.post("/api/v1/me/totp/confirm")
async def confirm_totp(request: web.Request) -> web.Response:
    owner = await current_owner(request)
    body = await read_json(request)
    await request.app[ENROLMENT].confirm_totp(owner, otp_field(body))
    return web.json_response({"confirmed": True})


@routes.get("/api/v1/me/key-params")
async def key_params(request: web.Request) -> web.Response:
    owner = await current_owner(request)
    return web.json_response(await request.app[ENROLMENT].key_params(owner))


@routes.post("/api/v1/me/transport-keys")
async def new_transport_key(request: web.Request) -> web.Response:
    owner = await current_owner(request)
    body = await read_json(request)
    purpose = body.choice("purpose", {p: p for p in sorted(TRANSPORT_PURPOSES)})
    answer = await request.app[ENROLMENT].new_transport_key(owner, purpose)
    return web.json_response(answer, status=201)


@routes.get("/api/v1/me/credentials")
async def list_credentials(request: web.Request) -> web.Response:
    owner = await current_owner(request)
    return web.json_response(await request.app[ENROLMENT].list_credentials(owner))


@routes.post("/api/v1/me/credentials")
async def create_credential(request: web.Request) -> web.Response:
    owner = await current_owner(request)
    body = await read_json(request)
    message = parse_transport_message(body.obj("password_key"))
    answer = await request.app[ENROLMENT].create_credential(
        owner, body.optional_text("algorithm", max_len=32) or "ec-p256", message, otp_field(body)
    )
    return web.json_response(answer, status=201)


@routes.delete("/api/v1/me/credentials/{credential_id}")
async def delete_credential(request: web.Request) -> web.Response:
    owner = await current_owner(request)
    body = await read_json(request)
    await request.app[ENROLMENT].delete_credential(
        owner, path_id(request, "credential_id"), otp_field(body)
    )
    return web.json_response({"deleted": True})
