"""Behind TLS termination: trusted proxy headers, and HSTS.

A load balancer that terminates TLS talks plain HTTP to the service, so
without help every request looks like `http://` from the balancer's
address: the portal's Origin check (`web.auth.check_origin`) refuses the
browser's `https://` origin and every per-address rate limit counts the
balancer. `forwarded_middleware` reads `X-Forwarded-For`,
`X-Forwarded-Proto` and `X-Forwarded-Host`, but only when the connection
comes from one of `trusted_proxies` (addresses or networks); from anyone
else the headers are ignored, since a client can send whatever it likes.

The client is the right-most `X-Forwarded-For` entry that is not itself a
trusted proxy (each proxy appends the address it saw, so entries to the left
of that are the client's own claims and are never believed). Proto and host
are the last values, the ones the nearest proxy set.

`install_hsts` sends `Strict-Transport-Security` on every answer once the
public URL is https: the browser then never tries plain HTTP again.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

from aiohttp import web

from cloudsign.settings import Network
from cloudsign.web.problems import error_response

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

HSTS: Final = "max-age=31536000; includeSubDomains"
SCHEMES: Final = ("http", "https")
MAX_HOST_CHARS: Final = 255


def _trusted(address: str | None, networks: Sequence[Network]) -> bool:
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def _last(header: str | None) -> str | None:
    if not header:
        return None
    value = header.split(",")[-1].strip()
    return value or None


class BadForwarding(ValueError):
    """A trusted proxy passed on a header that does not parse."""


def forwarded_client(forwarded_for: str, peer: str, networks: Sequence[Network]) -> str:
    """The client address from a trusted peer's `X-Forwarded-For`."""
    entries = [e.strip() for e in forwarded_for.split(",")]
    client = peer
    for entry in reversed(entries):
        try:
            address = str(ipaddress.ip_address(entry))
        except ValueError:
            raise BadForwarding("X-Forwarded-For holds something that is not an address") from None
        client = address
        if not _trusted(address, networks):
            break
    return client


def _changes(request: web.Request, networks: Sequence[Network]) -> dict[str, str]:
    changes: dict[str, str] = {}
    forwarded_for = request.headers.get("X-Forwarded-For")
    if forwarded_for:
        assert request.remote is not None
        changes["remote"] = forwarded_client(forwarded_for, request.remote, networks)
    proto = _last(request.headers.get("X-Forwarded-Proto"))
    if proto is not None:
        if proto.lower() not in SCHEMES:
            raise BadForwarding("X-Forwarded-Proto must be http or https")
        changes["scheme"] = proto.lower()
    host = _last(request.headers.get("X-Forwarded-Host"))
    if host is not None:
        if len(host) > MAX_HOST_CHARS or any(c in host for c in "/\\@ \t?#"):
            raise BadForwarding("X-Forwarded-Host is not a host")
        changes["host"] = host
    return changes


def forwarded_middleware(
    networks: Sequence[Network],
) -> Callable[..., Awaitable[web.StreamResponse]]:
    """A middleware that rewrites remote, scheme and host from a trusted
    proxy's headers; the middlewares after it (client address, problems)
    and the handlers see the client."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not networks or not _trusted(request.remote, networks):
            return await handler(request)
        try:
            changes = _changes(request, networks)
        except BadForwarding as e:
            return error_response(request, 400, "Bad forwarding header", str(e), "bad_forwarding")
        peer = request.remote
        if not changes or peer is None:
            return await handler(request)
        return await handler(
            request.clone(
                remote=changes.get("remote", peer),
                scheme=changes.get("scheme", request.scheme),
                host=changes.get("host", request.host),
            )
        )

    return middleware


def install_hsts(app: web.Application, public_url: str) -> None:
    """Strict-Transport-Security on every answer when the public URL is https."""
    if not public_url.lower().startswith("https://"):
        return

    async def add(_request: web.Request, response: web.StreamResponse) -> None:
        response.headers.setdefault("Strict-Transport-Security", HSTS)

    app.on_response_prepare.append(add)
