"""The address a request came from, for per-address rate limits.

A middleware puts it in a context variable for the duration of the request
(each aiohttp request runs in its own task, so the value cannot leak to
another request); services read it where they count attempts, without every
signature carrying it. Behind a load balancer this is the proxy's address
until trusted proxy headers are configured.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Final

from aiohttp import web

UNKNOWN: Final = "unknown"
_client_address: ContextVar[str] = ContextVar("client_address", default=UNKNOWN)


def client_address() -> str:
    """The current request's client address ("unknown" outside a request)."""
    return _client_address.get()


@web.middleware
async def client_address_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    token = _client_address.set(request.remote or UNKNOWN)
    try:
        return await handler(request)
    finally:
        _client_address.reset(token)
