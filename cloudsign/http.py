"""HTTP plumbing shared by every API: RFC 9457 problem+json errors, bounded
JSON bodies, bearer authentication."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web

from cloudsign.errors import CloudsignError, UnauthorizedError, ValidationError
from hsm_bridge import HsmError

log = logging.getLogger(__name__)

PROBLEM_JSON: Final = "application/problem+json"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def problem(status: int, title: str, detail: str, code: str, **extra: Any) -> web.Response:
    body = {
        "type": f"urn:cloudsign:error:{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    body.update(extra)
    headers = {"WWW-Authenticate": 'Bearer realm="cloudsign"'} if status == 401 else None
    return web.Response(
        status=status, text=json.dumps(body), content_type=PROBLEM_JSON, headers=headers
    )


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map domain and HTTP errors to problem+json; nothing internal leaks."""
    try:
        return await handler(request)
    except CloudsignError as e:
        extra = {"field": e.field} if isinstance(e, ValidationError) and e.field else {}
        return problem(e.status, e.title, e.detail, e.code, **extra)
    except HsmError as e:
        log.warning("HSM error on %s %s: %s", request.method, request.path, e.code)
        status = 503 if e.code in ("hsm_unavailable", "hsm_misconfigured") else 400
        return problem(status, "HSM operation refused", e.message, e.code)
    except web.HTTPRequestEntityTooLarge as e:
        return problem(
            413, "Payload too large", e.text or "request body too large", "payload_too_large"
        )
    except web.HTTPException as e:
        if e.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status, "http_error")
        return problem(e.status, e.reason, e.reason, code)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem(500, "Internal error", "the server failed to handle the request", "internal")


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object; 415 for another type, 400 for bad
    JSON, 413 past the app's body limit (aiohttp enforces it while reading)."""
    if request.content_type != "application/json":
        raise UnsupportedMediaError("expected Content-Type: application/json")
    raw = await request.read()
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValidationError("request body is not valid JSON") from e
    if not isinstance(data, dict):
        raise ValidationError("request body must be a JSON object")
    return data


class UnsupportedMediaError(CloudsignError):
    code = "unsupported_media_type"
    status = 415
    title = "Unsupported media type"


def bearer_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise UnauthorizedError("a Bearer access token is required")
    return token.strip()


def field(data: dict[str, Any], name: str, kind: type = str, *, required: bool = True) -> Any:
    value = data.get(name)
    if value is None:
        if required:
            raise ValidationError(f"{name} is required", field=name)
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValidationError(f"{name} must be a {kind.__name__}", field=name)
    return value
