"""Credentials carried by requests: the Bearer token of the Authorization
header, and the constant-time comparison of tokens.

A header may hold anything a client sends, including bytes that aiohttp
decodes to lone surrogates; a token is checked as printable ASCII of bounded
length before it is hashed or compared, so a hostile one is a 401, never an
encoding error.
"""

from __future__ import annotations

import hmac
import re
from typing import Final

from aiohttp import web

from cloudsign.errors import UnauthorizedError

MAX_TOKEN_CHARS: Final = 512
_TOKEN: Final = re.compile(rf"[\x21-\x7e]{{1,{MAX_TOKEN_CHARS}}}")


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
