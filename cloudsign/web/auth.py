"""Credentials carried by requests, checked once for every feature.

- **Owners**: a Bearer access token (API clients), or the portal's session
  cookie, which on unsafe methods must come with its CSRF header and a
  same-site Origin. The cookie holds an ordinary access token (the same
  table as Bearer tokens) but is HttpOnly, so page scripts never see it. The
  CSRF token is derived from it (a one-way hash, so it reveals nothing of the
  session token) and sent by the page in `X-CSRF-Token`: a synchronizer
  token that needs no server state. A cross-site page can neither read it
  nor, with SameSite=Strict, send the cookie; the Origin check is a third
  line. `owner_token` returns the token; the accounts feature resolves it.
- **Operators** (on the operator listener only): a Bearer session token
  (API clients), or the console's session cookie with the same CSRF rules
  as the portal's. `operator_token` returns the token; the operators
  feature resolves it and checks the role. There is no shared operator
  token: every operator signs in with their own factors.

Cookies carry the `__Host-` prefix: Secure, Path=/ and no Domain, so no
other host or path can set or shadow them (browsers treat loopback as
secure, so this works on http://127.0.0.1 too).

A header may hold anything a client sends, including bytes that aiohttp
decodes to lone surrogates; a token is checked as printable ASCII of bounded
length before it is hashed or compared, so a hostile one is a 401, never an
encoding error.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import Final

from aiohttp import web

from cloudsign.errors import ForbiddenError, UnauthorizedError

MAX_TOKEN_CHARS: Final = 512
_TOKEN: Final = re.compile(rf"[\x21-\x7e]{{1,{MAX_TOKEN_CHARS}}}")
SESSION_COOKIE: Final = "__Host-cloudsign_session"
OPERATOR_COOKIE: Final = "__Host-cloudsign_operator"
CSRF_HEADER: Final = "X-CSRF-Token"
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_CSRF_LABEL: Final = b"cloudsign/portal-csrf/v1\x00"


class CsrfError(ForbiddenError):
    code = "csrf_failed"
    title = "Cross-site request refused"


def well_formed_token(value: str | None) -> str | None:
    """`value` if it can be a token of ours (printable ASCII, bounded), else None."""
    if value is None or not _TOKEN.fullmatch(value):
        return None
    return value


def bearer_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    checked = well_formed_token(token.strip())
    if scheme.lower() != "bearer" or checked is None:
        raise UnauthorizedError("a Bearer access token is required")
    return checked


def same_token(given: str, expected: str) -> bool:
    """Constant-time equality of two tokens (both printable ASCII)."""
    return hmac.compare_digest(given.encode(), expected.encode())


# -- the portal's cookie session ---------------------------------------------------


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


def session_token(request: web.Request, cookie: str = SESSION_COOKIE) -> str | None:
    """The token from a session cookie, or None without one. Unsafe methods
    must carry the matching CSRF header and a same-site Origin."""
    token = well_formed_token(request.cookies.get(cookie))
    if token is None:
        return None
    if request.method not in SAFE_METHODS:
        check_origin(request)
        sent = well_formed_token(request.headers.get(CSRF_HEADER))
        if sent is None or not same_token(sent, csrf_token(token)):
            raise CsrfError(f"the {CSRF_HEADER} header is missing or wrong")
    return token


def owner_token(request: web.Request) -> str:
    """An owner's access token: the Bearer header (API clients), else the
    portal's session cookie (with its CSRF check on unsafe methods)."""
    if "Authorization" not in request.headers:
        token = session_token(request)
        if token is not None:
            return token
    return bearer_token(request)


# -- operators ---------------------------------------------------------------------


def operator_token(request: web.Request) -> str:
    """An operator's session token: Bearer, else the console cookie."""
    if "Authorization" not in request.headers:
        token = session_token(request, OPERATOR_COOKIE)
        if token is not None:
            return token
    return bearer_token(request)
