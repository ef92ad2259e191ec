"""HTTP surface of the web portal: the page, its static files, the two
browser libraries from node_modules, and the cookie-session endpoints.

Every page and file goes out with a strict Content-Security-Policy (no inline
script or style; WebAssembly for Argon2id is the one allowance) and the usual
hardening headers. The session endpoints set an HttpOnly, SameSite=Strict
cookie and hand the page only its CSRF token, never the access token.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from aiohttp import web

from cloudsign.accounts import Session
from cloudsign.appkeys import ACCOUNTS, LIFECYCLE, PROOFING, SETTINGS
from cloudsign.errors import NotFoundError, UnauthorizedError
from cloudsign.lifecycle import challenge_json, login_fields
from cloudsign.web.auth import SESSION_COOKIE, check_origin, csrf_token, session_token
from cloudsign.web.body import read_json

routes = web.RouteTableDef()

STATIC_DIR: Final = Path(__file__).resolve().parent / "static"
#: npm packages are installed at the repository root by scripts/setup.sh.
NODE_MODULES: Final = Path(__file__).resolve().parents[2] / "node_modules"
#: The only third-party browser code, pinned by package-lock.json; a fixed map, no lookup.
VENDOR: Final = {
    "hash-wasm.js": NODE_MODULES / "hash-wasm" / "dist" / "index.esm.min.js",
    "jsqr.js": NODE_MODULES / "jsqr" / "dist" / "jsQR.js",
    "qrcode.js": NODE_MODULES / "qrcode-generator" / "dist" / "qrcode.mjs",
    # pdf.js: the phone app draws a PDF's pages before it is approved.
    "pdf.js": NODE_MODULES / "pdfjs-dist" / "build" / "pdf.min.mjs",
    "pdf.worker.js": NODE_MODULES / "pdfjs-dist" / "build" / "pdf.worker.min.mjs",
}
_TYPES: Final = {
    ".html": "text/html",
    ".css": "text/css",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}


def content_security_policy(connect: tuple[str, ...] = ()) -> str:
    """The portal's CSP; `connect`: origins besides its own it may fetch
    from (the chain endpoint the auditor page reads anchors from)."""
    return "; ".join(
        (
            "default-src 'none'",
            "script-src 'self' 'wasm-unsafe-eval'",
            "style-src 'self'",
            "img-src 'self' blob:",
            "media-src 'self' blob: mediastream:",
            " ".join(("connect-src 'self'", *connect)),
            "font-src 'self'",
            "manifest-src 'self'",
            "form-action 'self'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        )
    )


CSP: Final = content_security_policy()
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(self), microphone=(), geolocation=()",
}


def _chain_origin(url: str) -> tuple[str, ...]:
    parts = urlsplit(url)
    return (f"{parts.scheme}://{parts.netloc}",) if parts.scheme and parts.netloc else ()


def _file(path: Path, *, cache: str, request: web.Request | None = None) -> web.FileResponse:
    ctype = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
    headers = {**SECURITY_HEADERS, "Cache-Control": cache}
    if request is not None:
        chain = _chain_origin(request.app[SETTINGS].public_chain_rpc_url)
        if chain:
            headers["Content-Security-Policy"] = content_security_policy(chain)
    if ctype:
        headers["Content-Type"] = f"{ctype}; charset=utf-8" if ctype.startswith("text/") else ctype
    return web.FileResponse(path, headers=headers)


@routes.get("/portal")
async def portal_redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound("/portal/")


@routes.get("/portal/")
async def portal_page(request: web.Request) -> web.FileResponse:
    return _file(STATIC_DIR / "index.html", cache="no-store", request=request)


#: Longer than any file the portal ships; a longer name is not looked up at all.
MAX_STATIC_PATH: Final = 128


@routes.get("/portal/static/{path:[A-Za-z0-9_./-]+}")
async def static_file(request: web.Request) -> web.FileResponse:
    name = request.match_info["path"]
    if len(name) > MAX_STATIC_PATH or ".." in name.split("/"):
        raise NotFoundError("no such portal file")
    try:
        path = (STATIC_DIR / name).resolve()
        found = path.is_relative_to(STATIC_DIR) and path.is_file() and path.suffix in _TYPES
    except OSError:  # a name the file system refuses is no file of ours
        found = False
    if not found:
        raise NotFoundError("no such portal file")
    return _file(path, cache="no-cache")


@routes.get("/portal/vendor/{name}")
async def vendor_file(request: web.Request) -> web.FileResponse:
    path = VENDOR.get(request.match_info["name"])
    if path is None:
        raise NotFoundError("no such library")
    if not path.is_file():
        raise NotFoundError(f"{path.name} is not installed; run scripts/setup.sh (npm ci)")
    return _file(path, cache="no-cache")


# -- cookie session -----------------------------------------------------------


def _session_response(request: web.Request, session: Session, status: int) -> web.Response:
    settings = request.app[SETTINGS]
    token = session.access_token
    response = web.json_response(
        {"owner_id": session.owner_id, "csrf_token": csrf_token(token)},
        status=status,
        headers={"Cache-Control": "no-store"},
    )
    # A `__Host-` cookie: Secure (browsers keep it on loopback too), Path=/,
    # no Domain, so no other host or path can set or shadow it.
    ttl = session.expires_at - request.app[ACCOUNTS].clock() if session.expires_at else None
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(ttl.total_seconds()) if ttl else settings.access_token_ttl_seconds,
        path="/",
        httponly=True,
        secure=True,
        samesite="Strict",
    )
    return response


@routes.post("/portal/session/activate")
async def activate(request: web.Request) -> web.Response:
    """Redeem an activation code from the registration desk (as POST
    /api/v1/activations) and start an enrolment cookie session."""
    check_origin(request)
    body = await read_json(request)
    body.only({"code"})
    session = await request.app[PROOFING].redeem(body.text("code", max_len=40))
    return _session_response(request, session, 201)


@routes.post("/portal/session/challenge")
async def login_challenge(request: web.Request) -> web.Response:
    """The transport key and key parameters of a login (as POST
    /api/v1/sessions/challenge)."""
    check_origin(request)
    body = await read_json(request)
    body.only({"iin"})
    challenge = await request.app[LIFECYCLE].login_challenge(body.digits("iin", min_len=12))
    return web.json_response(
        challenge_json(challenge), status=201, headers={"Cache-Control": "no-store"}
    )


@routes.post("/portal/session/login")
async def login(request: web.Request) -> web.Response:
    """Log in with IIN, a TOTP code and the key password wrapped on the
    device (as POST /api/v1/sessions)."""
    check_origin(request)
    iin, otp, password_key = login_fields(await read_json(request))
    session = await request.app[LIFECYCLE].login(iin, otp, password_key)
    return _session_response(request, session, 200)


@routes.get("/portal/session")
async def current_session(request: web.Request) -> web.Response:
    """The page asks, on load, whether its cookie is still a session (nulls if not)."""
    token = session_token(request)
    body: dict[str, str | None] = {"owner_id": None, "csrf_token": None, "scope": None}
    if token is not None:
        try:
            owner = await request.app[ACCOUNTS].authenticate(token)
        except UnauthorizedError:
            pass  # expired or logged out: the page starts anonymous
        else:
            body = {"owner_id": owner.id, "csrf_token": csrf_token(token), "scope": owner.scope}
    return web.json_response(body, headers={"Cache-Control": "no-store"})


@routes.post("/portal/session/logout")
async def logout(request: web.Request) -> web.Response:
    token = session_token(request)  # checks the CSRF header
    if token is not None:
        await request.app[ACCOUNTS].revoke_token(token)
    response = web.json_response({"logged_out": True}, headers={"Cache-Control": "no-store"})
    # Browsers ignore a `__Host-` cookie sent without Secure, its deletion included.
    response.del_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="Strict")
    return response
