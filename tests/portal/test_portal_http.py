"""The portal over plain HTTP (both databases): security headers, the local
third-party files, the cookie session and its CSRF rules; and the three
dictionaries of the UI agree."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import pytest

from cloudsign.portal.api import CSP, STATIC_DIR
from cloudsign.web.auth import CSRF_HEADER, SESSION_COOKIE
from tests.helpers import person


async def test_pages_carry_a_strict_csp(http: aiohttp.ClientSession, base_url: str) -> None:
    async with http.get(f"{base_url}/portal/") as resp:
        assert resp.status == 200
        assert resp.content_type == "text/html"
        html = await resp.text()
        headers = resp.headers
    csp = headers["Content-Security-Policy"]
    assert csp == CSP
    assert "script-src 'self' 'wasm-unsafe-eval'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval'" not in csp.replace("wasm-unsafe-eval", "")
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Cache-Control"] == "no-store"
    # No inline script, style or handler; no CDN.
    assert not re.search(r"<script(?![^>]*\bsrc=)", html)
    assert not re.search(r"<style|\sstyle=|\son[a-z]+=", html)
    assert "http://" not in html and "https://" not in html


async def test_browser_libraries_come_from_node_modules(
    http: aiohttp.ClientSession, base_url: str
) -> None:
    for name in ("hash-wasm.js", "qrcode.js"):
        async with http.get(f"{base_url}/portal/vendor/{name}") as resp:
            assert resp.status == 200, name
            assert resp.content_type == "text/javascript"
            assert "export" in await resp.text()
            assert "Content-Security-Policy" in resp.headers
    for path in (
        "/portal/vendor/lodash.js",
        "/portal/static/../routes.py",
        "/portal/static/%2e%2e/routes.py",
        "/portal/static/js/nothere.js",
    ):
        async with http.get(f"{base_url}{path}") as resp:
            assert resp.status == 404, path


async def test_cookie_session_needs_csrf_on_unsafe_requests(base_url: str) -> None:
    # unsafe=True: aiohttp keeps no cookies for an IP-address host otherwise.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        async with s.post(f"{base_url}/portal/session/register", json=person()) as resp:
            assert resp.status == 201
            body = await resp.json()
            cookie = resp.cookies[SESSION_COOKIE]
        assert set(body) == {"owner_id", "csrf_token"}  # never the access token
        assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/"
        csrf = {CSRF_HEADER: body["csrf_token"]}
        # Safe requests ride on the cookie alone.
        async with s.get(f"{base_url}/api/v1/me") as resp:
            assert resp.status == 200
            assert (await resp.json())["owner_id"] == body["owner_id"]
        async with s.get(f"{base_url}/portal/session") as resp:
            assert (await resp.json()) == body
        # Unsafe ones need the CSRF header, and a same-site Origin.
        async with s.post(f"{base_url}/api/v1/me/totp") as resp:
            assert resp.status == 403
            assert (await resp.json())["code"] == "csrf_failed"
        async with s.post(f"{base_url}/api/v1/me/totp", headers={CSRF_HEADER: "x" * 43}) as resp:
            assert resp.status == 403
        evil = {**csrf, "Origin": "https://evil.example"}
        async with s.post(f"{base_url}/api/v1/me/totp", headers=evil) as resp:
            assert resp.status == 403
        async with s.post(f"{base_url}/api/v1/me/totp", headers=csrf) as resp:
            assert resp.status == 201
        # Logging out ends the session on the server, not only in the browser.
        token = cookie.value
        async with s.post(f"{base_url}/portal/session/logout", headers=csrf) as resp:
            assert resp.status == 200
    async with aiohttp.ClientSession() as s:
        headers = {"Authorization": f"Bearer {token}"}
        async with s.get(f"{base_url}/api/v1/me", headers=headers) as resp:
            assert resp.status == 401


async def test_bearer_clients_need_no_csrf(http: aiohttp.ClientSession, base_url: str) -> None:
    async with http.post(f"{base_url}/api/v1/owners", json=person()) as resp:
        token = (await resp.json())["access_token"]
    headers = {"Authorization": f"Bearer {token}", "Origin": "https://elsewhere.example"}
    async with http.post(f"{base_url}/api/v1/me/totp", headers=headers) as resp:
        assert resp.status == 201


async def test_foreign_origin_cannot_log_in(http: aiohttp.ClientSession, base_url: str) -> None:
    async with http.post(
        f"{base_url}/portal/session/register",
        json=person(),
        headers={"Origin": "https://evil.example"},
    ) as resp:
        assert resp.status == 403
        assert SESSION_COOKIE not in resp.cookies


def _dictionaries() -> dict[str, set[str]]:
    source = (STATIC_DIR / "js" / "i18n.js").read_text(encoding="utf-8")
    out = {}
    for lang in ("kk", "ru", "en"):
        block = source.split(f"const {lang} = {{", 1)[1].split("\n};", 1)[0]
        out[lang] = set(re.findall(r'^\s+"?([a-z0-9_.]+)"?:', block, re.M))
    return out


def test_three_languages_have_every_string() -> None:
    dicts = _dictionaries()
    assert len(dicts["en"]) > 150
    assert dicts["kk"] == dicts["en"], dicts["kk"] ^ dicts["en"]
    assert dicts["ru"] == dicts["en"], dicts["ru"] ^ dicts["en"]
    used: set[str] = set()
    html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    used |= set(re.findall(r'data-i18n="([^"]+)"', html))
    used |= {p.split(":")[1] for p in re.findall(r'data-i18n-attr="([^"]+)"', html)}
    for js in Path(STATIC_DIR / "js").glob("*.js"):
        used |= set(re.findall(r'\bt\("([a-z0-9_.]+[a-z0-9_])"', js.read_text(encoding="utf-8")))
    assert used <= dicts["en"], used - dicts["en"]


@pytest.mark.parametrize("name", ["localStorage", "sessionStorage", "document.cookie"])
def test_scripts_keep_no_session_in_storage(name: str) -> None:
    for js in Path(STATIC_DIR / "js").glob("*.js"):
        text = js.read_text(encoding="utf-8")
        if name == "localStorage" and js.name == "i18n.js":
            # The language preference only.
            assert re.findall(r"localStorage\.\w+\(([^,)]+)", text) == ["STORE_KEY"] * 2
            continue
        assert name not in text, js.name
