"""Operators over HTTP, on the operator listener only: sign-in, the
account set-up of a new operator, operator management (security officers),
two-person approvals, and the operator action log (auditors)."""

from __future__ import annotations

import re
from typing import Any, Final

from aiohttp import web
from sqlalchemy import select

from cloudsign.appkeys import DATABASE, OPERATORS, SETTINGS
from cloudsign.errors import UnauthorizedError, ValidationError
from cloudsign.events import EventType
from cloudsign.operators.access import current_operator
from cloudsign.operators.service import Approval, ApprovalPendingError, Operator, Role
from cloudsign.storage.schema import events
from cloudsign.web.auth import (
    OPERATOR_COOKIE,
    check_origin,
    csrf_token,
    operator_token,
    session_token,
)
from cloudsign.web.body import read_json
from cloudsign.web.inputs import Fields
from cloudsign.web.openapi import OPENAPI_DOCUMENT
from cloudsign.web.params import path_id, query_int

operator_routes = web.RouteTableDef()

NO_STORE: Final = {"Cache-Control": "no-store"}
_USERNAME: Final = re.compile(r"[a-z][a-z0-9._-]{2,63}")
ROLES: Final = {r.value: r for r in Role}
MAX_LOG_ROWS: Final = 1000


def operator_json(op: Operator) -> dict[str, Any]:
    return {
        "operator_id": op.id,
        "username": op.username,
        "display_name": op.display_name,
        "roles": sorted(r.value for r in op.roles),
        "status": op.status,
    }


def approval_json(a: Approval) -> dict[str, Any]:
    return {
        "approval_id": a.id,
        "action": a.action,
        "payload": a.payload,
        "requested_by": a.requested_by,
        "requested_at": a.requested_at.isoformat(),
        "expires_at": a.expires_at.isoformat(),
        "status": a.status,
        "decided_by": a.decided_by,
        "result": a.result,
    }


def pending_response(p: ApprovalPendingError) -> web.Response:
    """202: the action waits for a second operator's approval."""
    return web.json_response({"status": "pending", **approval_json(p.approval)}, status=202)


def _sign_in_fields(body: Fields) -> tuple[str, str, str]:
    body.only({"username", "password", "otp"})
    return (
        body.text("username", max_len=64, pattern=_USERNAME),
        body.text("password", max_len=256),
        body.digits("otp", min_len=6, max_len=8),
    )


@operator_routes.post("/operator/api/v1/sessions")
async def sign_in(request: web.Request) -> web.Response:
    """`{username, password, otp}` -> a Bearer session token."""
    username, password, otp = _sign_in_fields(await read_json(request))
    operator, token = await request.app[OPERATORS].sign_in(username, password, otp)
    return web.json_response(
        {"operator": operator_json(operator), "access_token": token, "token_type": "Bearer"},
        headers=NO_STORE,
    )


@operator_routes.post("/console/session")
async def console_sign_in(request: web.Request) -> web.Response:
    """The console's sign-in: an HttpOnly `__Host-` cookie and the page's CSRF token."""

    check_origin(request)
    username, password, otp = _sign_in_fields(await read_json(request))
    operator, token = await request.app[OPERATORS].sign_in(username, password, otp)
    response = web.json_response(
        {"operator": operator_json(operator), "csrf_token": csrf_token(token)}, headers=NO_STORE
    )
    response.set_cookie(
        OPERATOR_COOKIE,
        token,
        max_age=request.app[SETTINGS].operator_session_ttl_seconds,
        path="/",
        httponly=True,
        secure=True,
        samesite="Strict",
    )
    return response


@operator_routes.get("/console/session")
async def console_session(request: web.Request) -> web.Response:
    """The console page asks whether its cookie is still a session."""

    token = session_token(request, OPERATOR_COOKIE)
    body: dict[str, Any] = {"operator": None, "csrf_token": None}
    if token is not None:
        try:
            operator = await request.app[OPERATORS].authenticate(token)
        except UnauthorizedError:
            pass
        else:
            body = {"operator": operator_json(operator), "csrf_token": csrf_token(token)}
    return web.json_response(body, headers=NO_STORE)


@operator_routes.post("/operator/api/v1/sessions/logout")
async def sign_out(request: web.Request) -> web.Response:
    await current_operator(request)
    await request.app[OPERATORS].sign_out(operator_token(request))
    response = web.json_response({"signed_out": True}, headers=NO_STORE)
    # A browser ignores a `__Host-` Set-Cookie without Secure, deletions too.
    response.del_cookie(OPERATOR_COOKIE, path="/", secure=True, httponly=True, samesite="Strict")
    return response


@operator_routes.get("/operator/api/v1/me")
async def me(request: web.Request) -> web.Response:
    return web.json_response(operator_json(await current_operator(request)))


# -- a new operator's own set-up -------------------------------------------------------


@operator_routes.post("/operator/api/v1/setup")
async def begin_setup(request: web.Request) -> web.Response:
    """`{setup_code, password}` -> the TOTP provisioning URI (once)."""
    check_origin(request)
    body = await read_json(request)
    body.only({"setup_code", "password"})
    uri = await request.app[OPERATORS].begin_setup(
        body.text("setup_code", max_len=64), body.text("password", max_len=256)
    )
    return web.json_response({"provisioning_uri": uri}, status=201, headers=NO_STORE)


@operator_routes.post("/operator/api/v1/setup/confirm")
async def finish_setup(request: web.Request) -> web.Response:
    check_origin(request)
    body = await read_json(request)
    body.only({"setup_code", "otp"})
    operator = await request.app[OPERATORS].finish_setup(
        body.text("setup_code", max_len=64), body.digits("otp", min_len=6, max_len=8)
    )
    return web.json_response(operator_json(operator))


# -- operator management (security officers) ------------------------------------------


@operator_routes.get("/operator/api/v1/operators")
async def list_operators(request: web.Request) -> web.Response:
    await current_operator(request, Role.SECURITY, Role.AUDITOR)
    return web.json_response(
        [operator_json(o) for o in await request.app[OPERATORS].all_operators()]
    )


@operator_routes.post("/operator/api/v1/operators")
async def create_operator(request: web.Request) -> web.Response:
    """`{username, display_name, roles}` -> the operator and their one-time
    setup code (201), or, for a security officer, a pending approval (202)."""
    by = await current_operator(request, Role.SECURITY)
    body = await read_json(request)
    body.only({"username", "display_name", "roles"})
    roles = [ROLES.get(r) for r in body.texts("roles", max_items=4, max_len=32, min_items=1)]
    if any(r is None for r in roles):
        raise ValidationError(f"roles are {', '.join(ROLES)}", field="roles")
    try:
        created, code = await request.app[OPERATORS].create(
            by,
            body.text("username", max_len=64, pattern=_USERNAME),
            body.text("display_name", max_len=200),
            [r for r in roles if r is not None],
        )
    except ApprovalPendingError as p:
        return pending_response(p)
    return web.json_response(
        {"operator": operator_json(created), "setup_code": code}, status=201, headers=NO_STORE
    )


@operator_routes.post("/operator/api/v1/operators/{operator_id}/disable")
async def disable_operator(request: web.Request) -> web.Response:
    by = await current_operator(request, Role.SECURITY)
    done = await request.app[OPERATORS].disable(by, path_id(request, "operator_id"))
    return web.json_response(operator_json(done))


# -- two-person approvals ---------------------------------------------------------------


@operator_routes.get("/operator/api/v1/approvals")
async def pending_approvals(request: web.Request) -> web.Response:
    await current_operator(request)
    return web.json_response([approval_json(a) for a in await request.app[OPERATORS].pending()])


async def _decide(request: web.Request, approve: bool) -> web.Response:
    by = await current_operator(request)
    approval = await request.app[OPERATORS].decide(
        by, path_id(request, "approval_id"), approve=approve
    )
    return web.json_response(approval_json(approval), headers=NO_STORE)


@operator_routes.post("/operator/api/v1/approvals/{approval_id}/approve")
async def approve(request: web.Request) -> web.Response:
    return await _decide(request, True)


@operator_routes.post("/operator/api/v1/approvals/{approval_id}/reject")
async def reject(request: web.Request) -> web.Response:
    return await _decide(request, False)


# -- the operator action log (auditors, security officers) ------------------------------

OPERATOR_EVENTS: Final = (
    EventType.OPERATOR_CREATE,
    EventType.OPERATOR_SIGNIN,
    EventType.OPERATOR_ACTION,
    EventType.IDENTITY_PROOF,
    EventType.ACTIVATION_ISSUE,
    EventType.CERT_REVOKE,
    EventType.NOTICE_PUBLISH,
)


@operator_routes.get("/operator/api/v1/audit/operator-actions")
async def operator_actions(request: web.Request) -> web.Response:
    """What operators did, newest first (`?before=SEQ` pages backwards)."""
    await current_operator(request, Role.AUDITOR, Role.SECURITY)
    stmt = (
        select(events.c.seq, events.c.event_type, events.c.occurred_at, events.c.data)
        .where(events.c.event_type.in_([e.value for e in OPERATOR_EVENTS]))
        .order_by(events.c.seq.desc())
        .limit(MAX_LOG_ROWS)
    )
    if "before" in request.query:
        stmt = stmt.where(events.c.seq < query_int(request, "before"))
    async with request.app[DATABASE].read() as conn:
        rows = (await conn.execute(stmt)).all()
    return web.json_response(
        [
            {"seq": seq, "type": kind, "at": at.isoformat(), "data": data}
            for seq, kind, at, data in rows
        ]
    )


@operator_routes.get("/operator/api/openapi.json")
async def operator_document(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 description of the operator API (signed-in staff only)."""
    await current_operator(request)
    return web.json_response(request.app[OPENAPI_DOCUMENT])
