"""Identity proofing over HTTP.

Public (citizens): redeem an activation code; prove an identity remotely
against the registry (when one is configured). Operator listener
(registration officers): capture a live face at the desk, approve a
proofing and hand out its activation code.
"""

from __future__ import annotations

import re
from typing import Any, Final

from aiohttp import web

from cloudsign.accounts import Session
from cloudsign.appkeys import PROOFING, SETTINGS
from cloudsign.ca import Identity, validate_iin
from cloudsign.operators import Role, current_operator
from cloudsign.proofing.service import DOCUMENT_TYPES, Capture, DeskProofing
from cloudsign.web.body import read_images, read_json
from cloudsign.web.params import path_id

routes = web.RouteTableDef()
#: Routes of the operator listener.
operator_routes = web.RouteTableDef()

MAX_BURST_FRAMES: Final = 16
NO_STORE: Final = {"Cache-Control": "no-store"}
_CODE: Final = re.compile(r"[A-Za-z0-9-]{16,40}")
_DOCUMENT_TYPES: Final = {t: t for t in DOCUMENT_TYPES}


def enrolment_json(session: Session) -> dict[str, Any]:
    return {
        "owner_id": session.owner_id,
        "access_token": session.access_token,
        "token_type": "Bearer",
        "scope": session.scope,
        "expires_at": session.expires_at.isoformat() if session.expires_at else None,
    }


def capture_json(capture: Capture) -> dict[str, Any]:
    c = capture.challenge
    return {
        "capture_id": capture.id,
        "nonce": c.nonce,
        "actions": [a.value for a in c.actions],
        "expires_at": c.expires_at.isoformat(),
    }


def activation_json(proofing: DeskProofing, public_url: str) -> dict[str, Any]:
    return {
        "proofing_id": proofing.id,
        "activation_code": proofing.activation_code,
        # What the QR on the desk's printout carries: the portal opens it.
        "activation_uri": f"{public_url}/portal/#/activate/{proofing.activation_code}",
        "expires_at": proofing.expires_at.isoformat(),
    }


async def _frames(request: web.Request) -> list[bytes]:
    return await read_images(
        request,
        field_name="frame",
        max_count=MAX_BURST_FRAMES,
        limit=request.app[SETTINGS].max_upload_bytes,
    )


# -- citizens -------------------------------------------------------------------------


@routes.post("/api/v1/activations")
async def redeem(request: web.Request) -> web.Response:
    """`{code}` from the registration desk -> an enrolment session."""
    body = await read_json(request)
    body.only({"code"})
    session = await request.app[PROOFING].redeem(body.text("code", max_len=40, pattern=_CODE))
    return web.json_response(enrolment_json(session), status=201, headers=NO_STORE)


@routes.post("/api/v1/proofings/remote")
async def remote_start(request: web.Request) -> web.Response:
    """`{iin, email}` -> a liveness challenge (the same for any IIN)."""
    body = await read_json(request)
    body.only({"iin", "email"})
    iin = validate_iin(body.digits("iin", min_len=12))
    email = Identity.checked_email(body.text("email", max_len=320))
    capture = await request.app[PROOFING].remote_start(iin, email)
    return web.json_response(capture_json(capture), status=201)


@routes.post("/api/v1/proofings/remote/{capture_id}/burst")
async def remote_finish(request: web.Request) -> web.Response:
    capture_id = path_id(request, "capture_id")
    frames = await _frames(request)
    session = await request.app[PROOFING].remote_finish(capture_id, frames)
    return web.json_response(enrolment_json(session), status=201, headers=NO_STORE)


# -- the registration desk (operator listener) -----------------------------------------


@operator_routes.post("/operator/api/v1/desk/captures")
async def desk_challenge(request: web.Request) -> web.Response:
    officer = await current_operator(request, Role.REGISTRATION)
    capture = await request.app[PROOFING].desk_challenge(officer)
    return web.json_response(capture_json(capture), status=201)


@operator_routes.post("/operator/api/v1/desk/captures/{capture_id}/burst")
async def desk_capture(request: web.Request) -> web.Response:
    officer = await current_operator(request, Role.REGISTRATION)
    capture_id = path_id(request, "capture_id")
    frames = await _frames(request)
    await request.app[PROOFING].desk_capture(officer, capture_id, frames)
    return web.json_response({"capture_id": capture_id, "captured": True})


@operator_routes.post("/operator/api/v1/proofings")
async def approve(request: web.Request) -> web.Response:
    """`{identity: {kind, iin, surname, given_name, email[, bin, organisation]},
    document: {type, number}, capture_id}` -> the activation code (once)."""
    officer = await current_operator(request, Role.REGISTRATION)
    body = await read_json(request)
    body.only({"identity", "document", "capture_id"})
    identity = Identity.from_json(body.obj("identity"))
    doc = body.obj("document")
    doc.only({"type", "number"})
    document = {
        "type": doc.choice("type", _DOCUMENT_TYPES),
        "number": doc.text("number", max_len=32),
    }
    proofing = await request.app[PROOFING].approve_desk(
        officer, identity, document, body.text("capture_id", max_len=36)
    )
    public_url = request.app[SETTINGS].effective_public_url
    return web.json_response(activation_json(proofing, public_url), status=201, headers=NO_STORE)
