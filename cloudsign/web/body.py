"""Request bodies, read once and bounded: JSON objects and image uploads.

JSON goes through `orjson`, whose parser has its own fixed nesting limit and
never recurses on the C stack through the interpreter, so a body nested
70,000 levels deep is a 400 whatever `sys.getrecursionlimit()` a library set.
On top, `check_shape` walks the parsed value without recursion and refuses
more than `MAX_JSON_DEPTH` levels. The parser is strict: no `NaN` or
`Infinity`, no lone surrogate, no raw control character in strings, no
byte-order mark; integers beyond 64 bits come back as floats, which every
integer field refuses.
"""

from __future__ import annotations

from typing import Any, Final

import orjson
from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from cloudsign.appkeys import SETTINGS
from cloudsign.errors import CloudsignError, ValidationError
from cloudsign.web.inputs import Fields

#: No API body nests deeper than 4; this leaves room and nothing more.
MAX_JSON_DEPTH: Final = 16
#: Parts of a multipart upload, whatever their names (each is also size-capped).
MAX_MULTIPART_PARTS: Final = 64


class UnsupportedMediaError(CloudsignError):
    code = "unsupported_media_type"
    status = 415
    title = "Unsupported media type"


class PayloadTooLargeError(CloudsignError):
    code = "payload_too_large"
    status = 413
    title = "Payload too large"


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(f"request body larger than {limit} bytes")


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it passes `limit` bytes
    (the app-wide `client_max_size` is the larger upload limit)."""
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.content.iter_chunked(1 << 16):
        total += len(chunk)
        if total > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def check_shape(value: Any, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Refuse a parsed JSON value nested deeper than `max_depth` (iteratively:
    the check itself cannot overflow a stack)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > max_depth:
            raise ValidationError(f"request body nests deeper than {max_depth} levels")
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))


def parse_json(raw: bytes) -> Any:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        # orjson names the position and the rule, never the input itself.
        reason = str(e).split(":", 1)[0][:80]
        raise ValidationError(f"request body is not valid JSON ({reason})") from e
    check_shape(value)
    return value


async def read_json(request: web.Request, limit: int | None = None) -> Fields:
    """The request body as a JSON object; 415 for another type, 400 for bad
    JSON, 413 past `limit` (default: the `max_body_bytes` setting)."""
    if request.content_type != "application/json":
        raise UnsupportedMediaError("expected Content-Type: application/json")
    raw = await read_body(request, limit or request.app[SETTINGS].max_body_bytes)
    return Fields.of(parse_json(raw))


async def read_images(
    request: web.Request, *, field_name: str, max_count: int, limit: int
) -> list[bytes]:
    """Images from `multipart/form-data` (repeated `field_name` parts) or JSON
    `{field_name: [base64, ...]}`; at most `max_count`, `limit` bytes in all.
    A malformed multipart body is a 400, whatever part of it is broken."""
    if request.content_type == "application/json":
        body = await read_json(request, limit)
        body.only({field_name})
        return body.b64_list(field_name, max_items=max_count, max_bytes=limit)
    if request.content_type != "multipart/form-data":
        raise UnsupportedMediaError("send multipart/form-data or application/json")
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    try:
        return await _multipart_images(request, field_name, max_count, limit)
    except (ValueError, LookupError, RuntimeError, HttpProcessingError) as e:
        # Missing or bad boundary, broken part headers, unknown transfer
        # encodings, truncated bodies: aiohttp raises builtins for all of them.
        raise ValidationError("the multipart/form-data body is malformed", field=field_name) from e


async def _multipart_images(
    request: web.Request, field_name: str, max_count: int, limit: int
) -> list[bytes]:
    images: list[bytes] = []
    total = 0
    parts = 0
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        parts += 1
        if parts > MAX_MULTIPART_PARTS:
            raise ValidationError(f"send 1..{max_count} {field_name} parts", field=field_name)
        if not isinstance(part, BodyPartReader) or part.name != field_name:
            raise ValidationError(
                f"unexpected form field; send only {field_name!r} parts", field=field_name
            )
        if len(images) >= max_count:
            raise ValidationError(f"send 1..{max_count} {field_name}", field=field_name)
        chunks: list[bytes] = []
        while chunk := await part.read_chunk(1 << 16):
            total += len(chunk)
            if total > limit:
                raise _too_large(limit)
            chunks.append(chunk)
        images.append(b"".join(chunks))
    if not images:
        raise ValidationError(f"send 1..{max_count} {field_name}", field=field_name)
    return images
