"""The app over plain HTTP (both databases): every file under /app/ with the
portal's security headers, the service worker's own rules, nothing served
outside the app's directory; and, read from the sources, the shell the
worker caches is exactly the app's files and the portal modules they
import, the three languages have every string, and no script keeps a
session anywhere but in this tab."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp

from cloudsign.portal.api import CSP, SECURITY_HEADERS, STATIC_DIR
from mobile_api.webapp import APP_DIR, PORTAL_FILES, VERSION_PLACEHOLDER

JS_DIR = APP_DIR / "js"
_IMPORT = re.compile(r'^import\s+(?:[^;"]*?from\s+)?"([^"]+)";', re.M | re.S)


def _shell() -> list[str]:
    source = (APP_DIR / "sw.js").read_text(encoding="utf-8")
    block = source.split("const SHELL = [", 1)[1].split("];", 1)[0]
    return re.findall(r'"([^"]+)"', block)


def _imports(path: Path, url: str) -> set[str]:
    """The URLs a module imports, resolved against its own URL."""
    out = set()
    for spec in _IMPORT.findall(path.read_text(encoding="utf-8")):
        base = url.rsplit("/", 1)[0]
        out.add(spec if spec.startswith("/") else f"{base}/{spec.removeprefix('./')}")
    return out


def _local(url: str) -> Path | None:
    if url.startswith("/app/"):
        return APP_DIR / url.removeprefix("/app/")
    if url.startswith("/portal/static/"):
        return STATIC_DIR / url.removeprefix("/portal/static/")
    return None  # /portal/vendor/: npm code


async def test_every_file_carries_the_portals_headers(
    http: aiohttp.ClientSession, base_url: str
) -> None:
    files = [p for p in APP_DIR.rglob("*") if p.is_file()]
    paths = ["/app/"] + [f"/app/{p.relative_to(APP_DIR).as_posix()}" for p in files]
    types = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
    types |= {".webmanifest": "application/manifest+json", ".html": "text/html"}
    for path in paths:
        async with http.get(base_url + path) as resp:
            assert resp.status == 200, path
            for name, value in SECURITY_HEADERS.items():
                assert resp.headers[name] == value, (path, name)
            assert resp.headers["Cache-Control"] == "no-cache", path
            suffix = Path(path).suffix or ".html"
            assert resp.content_type == types[suffix], path
    assert SECURITY_HEADERS["Content-Security-Policy"] == CSP


async def test_the_service_worker_is_fresh_and_versioned_by_the_shell(
    http: aiohttp.ClientSession, base_url: str
) -> None:
    async with http.get(f"{base_url}/app/sw.js") as resp:
        assert resp.status == 200
        assert resp.content_type == "text/javascript"
        assert resp.headers["Cache-Control"] == "no-cache"
        source = await resp.text()
    assert VERSION_PLACEHOLDER not in source
    (version,) = re.findall(r'const SHELL_VERSION = "([0-9a-f]{20})";', source)
    async with http.get(f"{base_url}/app/sw.js") as again:
        assert version in await again.text()
    # The worker leaves everything but the shell to the network.
    assert "/api/" not in source.split("const SHELL = [", 1)[1].split("];", 1)[0]


async def test_nothing_outside_the_app_is_served(
    http: aiohttp.ClientSession, base_url: str
) -> None:
    async with http.get(f"{base_url}/app", allow_redirects=False) as resp:
        assert resp.status == 302 and resp.headers["Location"] == "/app/"
    for path in (
        "/app/../webapp.py",
        "/app/%2e%2e/webapp.py",
        "/app/js/nothere.js",
        "/app/js/../../api.py",
        "/app/README",
        "/app/" + "a" * 200 + ".js",
    ):
        async with http.get(base_url + path) as resp:
            assert resp.status == 404, path


def test_the_shell_is_the_app_and_every_portal_module_it_imports() -> None:
    shell = _shell()
    assert len(shell) == len(set(shell))
    own = {f"/app/{p.relative_to(APP_DIR).as_posix()}" for p in APP_DIR.rglob("*") if p.is_file()}
    own -= {"/app/sw.js", "/app/index.html"}
    assert {p for p in shell if p.startswith("/app/")} == own | {"/app/"}
    # Every module the page loads, transitively, portal ones included.
    html = (APP_DIR / "index.html").read_text(encoding="utf-8")
    todo = set(re.findall(r'<script type="module" src="([^"]+)"', html))
    seen: set[str] = set()
    while todo:
        url = todo.pop()
        seen.add(url)
        path = _local(url)
        if path is not None:
            todo |= _imports(path, url) - seen
    assert seen <= set(shell), seen - set(shell)
    portal = {p for p in seen if p.startswith("/portal/static/")}
    assert portal == {f"/portal/static/{name}" for name in PORTAL_FILES}
    assert {p for p in shell if p.startswith("/portal/")} == {
        p for p in seen if p.startswith("/portal/")
    }


def _dictionaries(path: Path) -> dict[str, set[str]]:
    source = path.read_text(encoding="utf-8")
    out = {}
    for lang in ("kk", "ru", "en"):
        block = source.split(f"const {lang} = {{", 1)[1].split("\n};", 1)[0]
        out[lang] = set(re.findall(r'^\s+"?([a-z0-9_.]+)"?:', block, re.M))
    return out


def test_three_languages_have_every_string() -> None:
    app = _dictionaries(JS_DIR / "i18n.js")
    assert len(app["en"]) > 80
    assert all(key.startswith("app.") for key in app["en"])
    assert app["kk"] == app["en"], app["kk"] ^ app["en"]
    assert app["ru"] == app["en"], app["ru"] ^ app["en"]
    portal = _dictionaries(STATIC_DIR / "js" / "i18n.js")
    known = app["en"] | portal["en"]
    used: set[str] = set()
    html = (APP_DIR / "index.html").read_text(encoding="utf-8")
    used |= set(re.findall(r'data-i18n="([^"]+)"', html))
    used |= {p.split(":")[1] for p in re.findall(r'data-i18n-attr="([^"]+)"', html)}
    for js in JS_DIR.glob("*.js"):
        text = js.read_text(encoding="utf-8")
        used |= set(re.findall(r'\bt[f]?\("([a-z0-9_.]+[a-z0-9_])"', text))
    assert used <= known, used - known


def test_pages_have_no_inline_code_and_no_other_origin() -> None:
    for page in (APP_DIR / "index.html", APP_DIR / "sw.js"):
        text = page.read_text(encoding="utf-8")
        assert "http://" not in text and "https://" not in text, page.name
    html = (APP_DIR / "index.html").read_text(encoding="utf-8")
    assert not re.search(r"<script(?![^>]*\bsrc=)", html)
    assert not re.search(r"<style|\sstyle=|\son[a-z]+=", html)
    for js in JS_DIR.glob("*.js"):
        text = js.read_text(encoding="utf-8")
        assert "innerHTML" not in text and "eval(" not in text, js.name


def test_the_session_stays_in_this_tab() -> None:
    """The token in sessionStorage (api.js) only; localStorage holds the
    phone's binding (no secret) and the portal's language preference."""
    keys: dict[str, dict[str, set[str]]] = {}
    for js in JS_DIR.glob("*.js"):
        text = js.read_text(encoding="utf-8")
        assert "document.cookie" not in text and "indexedDB" not in text, js.name
        for store in ("sessionStorage", "localStorage"):
            used = set(re.findall(rf"{store}\.\w+\(\s*([^,)]+)", text))
            if used:
                keys.setdefault(store, {})[js.name] = used
    assert keys == {
        "sessionStorage": {"api.js": {"STORE_KEY"}},
        "localStorage": {"webauthn.js": {"DEVICE_KEY"}},
    }
