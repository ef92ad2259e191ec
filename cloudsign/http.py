"""HTTP plumbing shared by every API: RFC 9457 problem+json errors, bounded
JSON bodies, bearer authentication."""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import BodyPartReader, web

from cloudsign.appkeys import SETTINGS
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


#: CSC's error names for our statuses (CSC API §10: error, error_description).
_CSC_ERRORS: Final = {401: "invalid_token", 403: "access_denied"}


def csc_error(status: int, error: str, description: str) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps({"error": error, "error_description": description}),
        content_type="application/json",
    )


def _error_response(
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
            extra["field"] = e.field
        reason = getattr(e, "reason", None)
        if isinstance(reason, str):
            extra["reason"] = reason
        return _error_response(request, e.status, e.title, e.detail, e.code, **extra)
    except HsmError as e:
        log.warning("HSM error on %s %s: %s", request.method, request.path, e.code)
        status = 503 if e.code in ("hsm_unavailable", "hsm_misconfigured") else 400
        return _error_response(request, status, "HSM operation refused", e.message, e.code)
    except web.HTTPRequestEntityTooLarge as e:
        return _error_response(
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
        return _error_response(request, e.status, e.reason, e.reason, code)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _error_response(
            request, 500, "Internal error", "the server failed to handle the request", "internal"
        )


class UnsupportedMediaError(CloudsignError):
    code = "unsupported_media_type"
    status = 415
    title = "Unsupported media type"


class PayloadTooLargeError(CloudsignError):
    code = "payload_too_large"
    status = 413
    title = "Payload too large"


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it passes `limit` bytes
    (the app-wide `client_max_size` is the larger upload limit)."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLargeError(f"request body larger than {limit} bytes")
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.content.iter_chunked(1 << 16):
        total += len(chunk)
        if total > limit:
            raise PayloadTooLargeError(f"request body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: web.Request, limit: int | None = None) -> dict[str, Any]:
    """The request body as a JSON object; 415 for another type, 400 for bad
    JSON, 413 past `limit` (default: the `max_body_bytes` setting)."""
    if request.content_type != "application/json":
        raise UnsupportedMediaError("expected Content-Type: application/json")
    raw = await read_body(request, limit or request.app[SETTINGS].max_body_bytes)
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValidationError("request body is not valid JSON") from e
    if not isinstance(data, dict):
        raise ValidationError("request body must be a JSON object")
    return data


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


async def read_images(
    request: web.Request, *, field_name: str, max_count: int, limit: int
) -> list[bytes]:
    """Images from `multipart/form-data` (repeated `field_name` parts) or JSON
    `{field_name: [base64, ...]}`; at most `max_count`, `limit` bytes in all."""
    if request.content_type == "application/json":
        data = await read_json(request, limit)
        items = data.get(field_name)
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise ValidationError(
                f"{field_name} must be a list of base64 strings", field=field_name
            )
        if not 1 <= len(items) <= max_count:
            raise ValidationError(f"send 1..{max_count} {field_name}", field=field_name)
        try:
            return [base64.b64decode(i, validate=True) for i in items]
        except (binascii.Error, ValueError) as e:
            raise ValidationError(f"{field_name} must be base64", field=field_name) from e
    if request.content_type != "multipart/form-data":
        raise UnsupportedMediaError("send multipart/form-data or application/json")
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLargeError(f"request body larger than {limit} bytes")
    images: list[bytes] = []
    total = 0
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader) or part.name != field_name:
            raise ValidationError(f"unexpected form field; send only {field_name!r} parts")
        if len(images) >= max_count:
            raise ValidationError(f"send 1..{max_count} {field_name}", field=field_name)
        chunks: list[bytes] = []
        while chunk := await part.read_chunk(1 << 16):
            total += len(chunk)
            if total > limit:
                raise PayloadTooLargeError(f"request body larger than {limit} bytes")
            chunks.append(chunk)
        images.append(b"".join(chunks))
    if not images:
        raise ValidationError(f"send 1..{max_count} {field_name}", field=field_name)
    return images
