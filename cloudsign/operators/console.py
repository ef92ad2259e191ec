"""The operator console: one static page, its scripts and its stylesheet
(`console/`), served on the operator listener at `/console/`, never on the
public one.

The page talks to the operator API with the console's HttpOnly session
cookie and the CSRF token `POST /console/session` hands it (kept in the
page's memory only). Its hardening headers are the portal's, given by the
composition root (`ConsoleHeaders(portal SECURITY_HEADERS)`, a middleware on
every answer of the operator listener): the portal is another feature, so
this module cannot import them. The same goes for the QR library the portal
vendors from node_modules (`console_vendor_routes(portal VENDOR)`): the
console is another origin, and its CSP loads scripts from its own origin only.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Final

from aiohttp import web

from cloudsign.errors import NotFoundError

CONSOLE_DIR: Final = Path(__file__).resolve().parent / "console"
#: Longer than any file the console ships; a longer name is not looked up at all.
MAX_STATIC_PATH: Final = 128
#: The only third-party browser code the console uses (from the portal's map).
CONSOLE_LIBRARIES: Final = ("qrcode.js",)
_TYPES: Final = {
    ".html": "text/html",
    ".css": "text/css",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".svg": "image/svg+xml",
}
PAGE_CACHE: Final = "no-store"
FILE_CACHE: Final = "no-cache"
#: What an operator-listener answer without its own Cache-Control gets.
DEFAULT_CACHE: Final = "no-store"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
console_routes = web.RouteTableDef()


def _file(path: Path, *, cache: str) -> web.FileResponse:
    ctype = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
    headers = {"Cache-Control": cache}
    if ctype:
        headers["Content-Type"] = f"{ctype}; charset=utf-8" if ctype.startswith("text/") else ctype
    return web.FileResponse(path, headers=headers)


@console_routes.get("/console")
async def console_redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound("/console/")


@console_routes.get("/console/")
async def console_page(request: web.Request) -> web.FileResponse:
    return _file(CONSOLE_DIR / "index.html", cache=PAGE_CACHE)


@console_routes.get("/console/static/{path:[A-Za-z0-9_./-]+}")
async def console_file(request: web.Request) -> web.FileResponse:
    name = request.match_info["path"]
    if len(name) > MAX_STATIC_PATH or ".." in name.split("/"):
        raise NotFoundError("no such console file")
    try:
        path = (CONSOLE_DIR / name).resolve()
        found = path.is_relative_to(CONSOLE_DIR) and path.is_file() and path.suffix in _TYPES
    except OSError:  # a name the file system refuses is no file of ours
        found = False
    if not found:
        raise NotFoundError("no such console file")
    return _file(path, cache=FILE_CACHE)


@dataclass(frozen=True)
class _Library:
    path: Path

    async def serve(self, request: web.Request) -> web.FileResponse:
        if not self.path.is_file():
            raise NotFoundError(f"{self.path.name} is not installed; run scripts/setup.sh (npm ci)")
        return _file(self.path, cache=FILE_CACHE)


def console_vendor_routes(libraries: Mapping[str, Path]) -> web.RouteTableDef:
    """`/console/vendor/<name>` for the libraries the console uses, from the
    map of vendored files the composition root passes (the portal's)."""
    routes = web.RouteTableDef()
    for name in CONSOLE_LIBRARIES:
        if name in libraries:
            routes.get(f"/console/vendor/{name}")(_Library(libraries[name]).serve)
    return routes


class ConsoleHeaders:
    """Middleware: `headers` (the portal's CSP and hardening headers) on
    every answer of the operator listener, errors and redirects included,
    and `Cache-Control: no-store` where a handler set none. Outermost, so
    it sees the problem+json answers too."""

    __middleware_version__: ClassVar[int] = 1  # aiohttp's marker of a new-style middleware

    def __init__(self, headers: Mapping[str, str]) -> None:
        self.headers: Final = dict(headers)

    def _harden(self, response: web.StreamResponse) -> None:
        if response.prepared:
            return
        response.headers.update(self.headers)
        response.headers.setdefault("Cache-Control", DEFAULT_CACHE)

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as e:  # redirects the problem middleware lets through
            self._harden(e)
            raise
        self._harden(response)
        return response
