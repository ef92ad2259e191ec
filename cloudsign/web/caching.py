"""No cache keeps what an API answer carries.

Answers of the citizen, CSC and operator APIs carry tokens, SADs,
activation codes, TOTP seeds and personal data. Each route need not
remember: every answer under those prefixes that set no `Cache-Control` of
its own goes out with `no-store`. The public repository (`/pki`, `/log`)
and the static pages keep their own caching rules.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web

PRIVATE_PREFIXES: Final = ("/api/", "/csc/", "/operator/", "/portal/session", "/console/session")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _private(path: str) -> bool:
    return path.startswith(PRIVATE_PREFIXES)


@web.middleware
async def no_store_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    if _private(request.path) and not response.prepared:
        response.headers.setdefault("Cache-Control", "no-store")
    return response
