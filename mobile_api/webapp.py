"""The citizen's mobile app over HTTP: a Progressive Web App under `/app/`.

Plain HTML, CSS and ES modules from `mobile_api/app/`, no build step. The
app reuses the portal's browser modules by URL (`/portal/static/js/...`:
the key-password crypto, the camera, the dictionaries, the UI helpers), so
its service worker (`/app/sw.js`) lists those files in the app shell too.

Every answer carries the portal's security headers (its strict CSP and the
hardening headers). The portal is another feature, so this module does not
import them: the composition root hands them over in `app[APP_HEADERS]`
(as it hands them to the operator console), and a missing key is an error,
never an answer without a CSP.

The service worker is served with `Cache-Control: no-cache`, so the browser
asks for it on every start; its `SHELL_VERSION` placeholder is replaced by
a digest of every file of the shell, so any change to one of them installs a
new worker with a new cache. It never caches an API answer.
"""

from __future__ import annotations

import hashlib
import mimetypes
from collections.abc import Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Final

from aiohttp import web

from cloudsign.errors import NotFoundError

routes = web.RouteTableDef()

#: The security headers of every answer (the portal's SECURITY_HEADERS).
APP_HEADERS: web.AppKey[Mapping[str, str]] = web.AppKey("mobile_app_headers")

APP_DIR: Final = Path(__file__).resolve().parent / "app"
#: The portal's files the app imports (by URL, below /portal/static/): part of the shell.
PORTAL_FILES: Final = (
    "js/api.js",
    "js/camera.js",
    "js/consents.js",
    "js/crypto.js",
    "js/facecheck.js",
    "js/i18n.js",
    "js/ui.js",
)
#: The placeholder in sw.js that the digest of the shell replaces.
VERSION_PLACEHOLDER: Final = "__SHELL_VERSION__"
_TYPES: Final = {
    ".html": "text/html",
    ".css": "text/css",
    ".js": "text/javascript",
    ".png": "image/png",
    ".webmanifest": "application/manifest+json",
}
#: Longer than any file the app ships; a longer name is not looked up at all.
MAX_STATIC_PATH: Final = 96
NO_CACHE: Final = "no-cache"


def _headers(request: web.Request, ctype: str | None, cache_control: str) -> dict[str, str]:
    security = request.app.get(APP_HEADERS)
    if security is None:
        raise RuntimeError(
            "mobile_api.webapp needs app[APP_HEADERS] (the portal's SECURITY_HEADERS)"
        )
    headers = {**security, "Cache-Control": cache_control}
    if ctype:
        headers["Content-Type"] = f"{ctype}; charset=utf-8" if ctype.startswith("text/") else ctype
    return headers


def _file(request: web.Request, path: Path) -> web.FileResponse:
    ctype = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
    return web.FileResponse(path, headers=_headers(request, ctype, NO_CACHE))


def _shell_files() -> list[bytes]:
    """The bytes of every file of the shell but the worker itself."""
    own = sorted(
        p for p in APP_DIR.rglob("*") if p.is_file() and p.suffix in _TYPES and p.name != "sw.js"
    )
    portal = resources.files("cloudsign.portal").joinpath("static")
    parts = [p.relative_to(APP_DIR).as_posix().encode() + b"\0" + p.read_bytes() for p in own]
    for name in PORTAL_FILES:
        item = portal.joinpath(name)
        parts.append(b"portal/" + name.encode() + b"\0" + item.read_bytes())
    return parts


@cache
def service_worker() -> str:
    """sw.js with the digest of the shell in place of its placeholder."""
    digest = hashlib.sha256()
    for part in _shell_files():
        digest.update(len(part).to_bytes(8, "big") + part)
    source = (APP_DIR / "sw.js").read_text(encoding="utf-8")
    return source.replace(VERSION_PLACEHOLDER, digest.hexdigest()[:20])


@routes.get("/app")
async def app_redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound("/app/")


@routes.get("/app/")
async def app_page(request: web.Request) -> web.FileResponse:
    return _file(request, APP_DIR / "index.html")


@routes.get("/app/sw.js")
async def worker(request: web.Request) -> web.Response:
    return web.Response(
        text=service_worker(),
        headers=_headers(request, "text/javascript", NO_CACHE),
    )


@routes.get("/app/{path:[A-Za-z0-9_./-]+}")
async def app_file(request: web.Request) -> web.FileResponse:
    name = request.match_info["path"]
    if len(name) > MAX_STATIC_PATH or ".." in name.split("/"):
        raise NotFoundError("no such app file")
    try:
        path = (APP_DIR / name).resolve()
        found = path.is_relative_to(APP_DIR) and path.is_file() and path.suffix in _TYPES
    except OSError:  # a name the file system refuses is no file of ours
        found = False
    if not found:
        raise NotFoundError("no such app file")
    return _file(request, path)
