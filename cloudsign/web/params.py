"""Query parameters, path parameters and headers, read with the same rules
as JSON fields (inputs.py): exact format, bounded length, ASCII digits."""

from __future__ import annotations

import re
import uuid
from typing import Final

from aiohttp import web

from cloudsign.errors import ValidationError
from cloudsign.web.inputs import DEFAULT_MAX_TEXT, check_digits, check_text, parse_int

_UUID: Final = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)


def query_int(request: web.Request, name: str, *, low: int = 0, high: int = 2**63 - 1) -> int:
    """A required integer query parameter in ASCII digits."""
    if name not in request.query:
        raise ValidationError(f"{name} is required", field=name)
    return parse_int(request.query[name], name, low=low, high=high)


def query_text(
    request: web.Request,
    name: str,
    *,
    max_len: int = DEFAULT_MAX_TEXT,
    pattern: re.Pattern[str] | None = None,
) -> str | None:
    if name not in request.query:
        return None
    return check_text(request.query[name], name, max_len=max_len, pattern=pattern)


def path_id(request: web.Request, name: str) -> str:
    """A UUID path parameter (credential, signature, challenge ids), lower-case."""
    return check_uuid(request.match_info[name], name)


def check_uuid(value: str, name: str) -> str:
    """A UUID (a path parameter or a body field), lower-case."""
    if not _UUID.fullmatch(value):
        raise ValidationError(f"{name} must be a UUID", field=name)
    return str(uuid.UUID(value))


def header_text(request: web.Request, name: str, *, max_len: int = DEFAULT_MAX_TEXT) -> str | None:
    value = request.headers.get(name)
    if value is None:
        return None
    return check_text(value, name, max_len=max_len)


def header_digits(
    request: web.Request, name: str, *, min_len: int, max_len: int | None = None
) -> str | None:
    value = request.headers.get(name)
    if value is None:
        return None
    return check_digits(value, name, min_len=min_len, max_len=max_len)
