"""Error answers: RFC 9457 problem+json everywhere, CSC's `{error,
error_description}` under `/csc/`, and the one middleware that maps domain
errors onto them.

What a client sees is bounded: a detail is cut to `MAX_DETAIL_CHARS`, so no
error can echo a large input back. What the log sees is bounded too: a
refused request writes nothing here (the access log has its one line); only
a genuine 500 writes a traceback. A database that is away (refused, cut off
mid-query, starting up, locked, the pool exhausted) is a 503 with
Retry-After and one warning line, not a 500: the request may simply be
retried.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

import orjson
from aiohttp import web
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from cloudsign.errors import CloudsignError, ValidationError
from cloudsign.web.logs import loggable_path
from hsm_bridge import HsmError

log = logging.getLogger(__name__)

PROBLEM_JSON: Final = "application/problem+json"
MAX_DETAIL_CHARS: Final = 300
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Seconds a client is asked to wait after a database outage answer.
DATABASE_RETRY_AFTER: Final = 2

#: CSC's error names for our statuses (CSC API §10: error, error_description).
_CSC_ERRORS: Final = {401: "invalid_token", 403: "access_denied", 423: "access_denied"}


def _cut(text: str) -> str:
    return text if len(text) <= MAX_DETAIL_CHARS else text[: MAX_DETAIL_CHARS - 1] + "…"


def problem(status: int, title: str, detail: str, code: str, **extra: Any) -> web.Response:
    body = {
        "type": f"urn:cloudsign:error:{code}",
        "title": title,
        "status": status,
        "detail": _cut(detail),
        "code": code,
    }
    body.update(extra)
    headers = {"WWW-Authenticate": 'Bearer realm="cloudsign"'} if status == 401 else None
    return web.Response(
        status=status, body=orjson.dumps(body), content_type=PROBLEM_JSON, headers=headers
    )


def csc_error(status: int, error: str, description: str) -> web.Response:
    return web.Response(
        status=status,
        body=orjson.dumps({"error": error, "error_description": _cut(description)}),
        content_type="application/json",
    )


def error_response(
    request: web.Request, status: int, title: str, detail: str, code: str, **extra: Any
) -> web.Response:
    if request.path.startswith("/csc/"):
        name = _CSC_ERRORS.get(status, "invalid_request" if status < 500 else "server_error")
        return csc_error(status, name, detail)
    return problem(status, title, detail, code, **extra)


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map domain and HTTP errors to problem+json (CSC's error body under
    /csc/); nothing internal leaks."""
    try:
        return await handler(request)
    except CloudsignError as e:
        extra: dict[str, Any] = {}
        if isinstance(e, ValidationError) and e.field:
            extra["field"] = _cut(e.field)
        reason = getattr(e, "reason", None)
        if isinstance(reason, str):
            extra["reason"] = reason
        response = error_response(request, e.status, e.title, e.detail, e.code, **extra)
        retry_after = getattr(e, "retry_after", None)
        if isinstance(retry_after, int):
            response.headers["Retry-After"] = str(retry_after)
        return response
    except HsmError as e:
        if e.code in ("hsm_unavailable", "hsm_misconfigured"):
            log.warning(
                "HSM unavailable on %s %s: %s", request.method, loggable_path(request), e.code
            )
            return error_response(request, 503, "HSM unavailable", e.message, e.code)
        return error_response(request, 400, "HSM operation refused", e.message, e.code)
    except web.HTTPRequestEntityTooLarge as e:
        return error_response(
            request,
            413,
            "Payload too large",
            e.text or "request body too large",
            "payload_too_large",
        )
    except web.HTTPException as e:
        if e.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status, "http_error")
        response = error_response(request, e.status, e.reason, e.reason, code)
        if e.status == 405 and "Allow" in e.headers:
            response.headers["Allow"] = e.headers["Allow"]
        return response
    except (DBAPIError, PoolTimeoutError, ConnectionError) as e:
        if not _database_away(e):
            return _internal(request)
        log.warning(
            "database unavailable on %s %s: %s",
            request.method,
            loggable_path(request),
            type(getattr(e, "orig", None) or e).__name__,
        )
        response = error_response(
            request,
            503,
            "Database unavailable",
            "the service's database did not answer; retry shortly",
            "database_unavailable",
        )
        response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER)
        return response
    except RecursionError:
        # Only hostile input nests deep enough to get here (the JSON reader
        # has its own bound; this covers the ASN.1 and PDF parsers).
        log.warning("input nested too deeply on %s %s", request.method, loggable_path(request))
        return error_response(
            request, 400, "Bad request", "the input is nested too deeply", "too_deep"
        )
    except Exception:  # noqa: BLE001 - _internal logs it with its traceback
        return _internal(request)


def _internal(request: web.Request) -> web.Response:
    """A bug: the traceback goes to the log, nothing of it to the client."""
    log.exception("unhandled error on %s %s", request.method, loggable_path(request))
    return error_response(
        request, 500, "Internal error", "the server failed to handle the request", "internal"
    )


#: What the drivers say when the database is away or busy, not wrong.
_AWAY: Final = (
    "database is locked",  # SQLite, another writer past the busy timeout
    "database is busy",
    "starting up",  # PostgreSQL restarting
    "not yet accepting connections",  # PostgreSQL in crash recovery after a restart
    "shutting down",
    "terminating connection",
    "connection was closed",
    "connection is closed",
    "connection refused",
    "server closed the connection",
)


def _database_away(e: BaseException) -> bool:
    """A lost, refused or busy database, not a wrong statement (a missing
    table or a broken query stays a 500 with its traceback).

    asyncpg reports a refused connection as a bare OSError (SQLAlchemy does
    not wrap it); SQLAlchemy marks a connection that died mid-query as
    invalidated; the rest is told by the driver's message."""
    if isinstance(e, ConnectionError | PoolTimeoutError):
        return True
    if isinstance(e, DBAPIError):
        text = str(e.orig if e.orig is not None else e).lower()
        return e.connection_invalidated or any(words in text for words in _AWAY)
    return False
