"""The portal's cookie session: which cookie carries the access token, and the
CSRF check every unsafe request riding on that cookie must pass.

The cookie holds an ordinary access token (the same table as Bearer tokens)
but is HttpOnly, so page scripts never see it. The CSRF token is derived from
it (a one-way hash, so it reveals nothing of the session token) and sent by
the page in `X-CSRF-Token`: a synchronizer token that needs no server state.
A cross-site page can neither read it nor, with SameSite=Strict, send the
cookie; the Origin check is a third line.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Final

from aiohttp import web

from cloudsign.errors import ForbiddenError
from cloudsign.web.auth import same_token, well_formed_token

SESSION_COOKIE: Final = "cloudsign_session"
CSRF_HEADER: Final = "X-CSRF-Token"
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_CSRF_LABEL: Final = b"cloudsign/portal-csrf/v1\x00"


class CsrfError(ForbiddenError):
    code = "csrf_failed"
    title = "Cross-site request refused"


def csrf_token(session_token: str) -> str:
    digest = hashlib.sha256(_CSRF_LABEL + session_token.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def check_origin(request: web.Request) -> None:
    """Refuse a browser request whose Origin is another site (absent is fine:
    non-browser clients and same-origin GETs send none)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return
    expected = f"{request.scheme}://{request.host}"
    if origin != expected:
        raise CsrfError("the request comes from another origin")


def session_token(request: web.Request) -> str | None:
    """The access token from the portal cookie, or None without one. Unsafe
    methods must carry the matching CSRF header and a same-site Origin."""
    token = well_formed_token(request.cookies.get(SESSION_COOKIE))
    if token is None:
        return None
    if request.method not in SAFE_METHODS:
        check_origin(request)
        sent = well_formed_token(request.headers.get(CSRF_HEADER))
        if sent is None or not same_token(sent, csrf_token(token)):
            raise CsrfError(f"the {CSRF_HEADER} header is missing or wrong")
    return token
