"""The portal over plain HTTP (both databases): security headers, the local
third-party files, the cookie session (opened by a desk's activation code
or by a two-factor login) and its CSRF rules; and the three dictionaries of
the UI agree."""

from __future__ import annotations

import base64
import re
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cloudsign.portal.api import CSP, STATIC_DIR
from cloudsign.web.auth import CSRF_HEADER, SESSION_COOKIE
from device_client.client import CloudsignClient
from device_client.device import Argon2Params, derive_password_key, wrap_for_transport
from tests.helpers import activated, enrolled, make_iin, person
from tests.staff import Staff


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


def _cookie_jar(base_url: str) -> aiohttp.CookieJar:
    """A jar that keeps and sends the `__Host-` (Secure) cookie to the test
    server on http://127.0.0.1, as browsers do for loopback. unsafe=True:
    aiohttp keeps no cookies for an IP-address host otherwise."""
    return aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=[base_url])


async def _desk_code(staff: Staff) -> str:
    return str((await staff.registration.proof(person()))["activation_code"])


async def test_activation_opens_an_enrolment_cookie_session_with_csrf(
    base_url: str, staff: Staff
) -> None:
    code = await _desk_code(staff)
    async with aiohttp.ClientSession(cookie_jar=_cookie_jar(base_url)) as s:
        async with s.post(f"{base_url}/portal/session/activate", json={"code": code}) as resp:
            assert resp.status == 201, await resp.text()
            assert resp.headers["Cache-Control"] == "no-store"
            body = await resp.json()
            cookie = resp.cookies[SESSION_COOKIE]
        assert SESSION_COOKIE == "__Host-cloudsign_session"
        assert set(body) == {"owner_id", "csrf_token"}  # never the access token
        assert cookie["httponly"] and cookie["secure"]
        assert cookie["samesite"] == "Strict" and cookie["path"] == "/"
        assert not cookie["domain"]
        csrf = {CSRF_HEADER: body["csrf_token"]}
        # Safe requests ride on the cookie alone.
        async with s.get(f"{base_url}/api/v1/me") as resp:
            assert resp.status == 200
            me = await resp.json()
            assert me["owner_id"] == body["owner_id"] and me["session"] == "enrolment"
        async with s.get(f"{base_url}/portal/session") as resp:
            assert (await resp.json()) == {**body, "scope": "enrolment"}
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
        # An enrolment session is no login: the cabinet's changes are refused.
        async with s.post(f"{base_url}/api/v1/me/totp/reset", json={}, headers=csrf) as resp:
            assert resp.status == 403
        # Logging out ends the session on the server, and the cookie in the jar.
        token = cookie.value
        async with s.post(f"{base_url}/portal/session/logout", headers=csrf) as resp:
            assert resp.status == 200
            gone = resp.cookies[SESSION_COOKIE]
            assert gone.value == "" and gone["secure"] and gone["path"] == "/"
        async with s.get(f"{base_url}/portal/session") as resp:
            assert (await resp.json())["owner_id"] is None
    async with aiohttp.ClientSession() as s:
        headers = {"Authorization": f"Bearer {token}"}
        async with s.get(f"{base_url}/api/v1/me", headers=headers) as resp:
            assert resp.status == 401


async def test_an_activation_code_works_once(base_url: str, staff: Staff) -> None:
    code = await _desk_code(staff)
    async with aiohttp.ClientSession(cookie_jar=_cookie_jar(base_url)) as s:
        # As a citizen may type it: lower case, no dashes.
        typed = code.replace("-", "").lower()
        async with s.post(f"{base_url}/portal/session/activate", json={"code": typed}) as resp:
            assert resp.status == 201
    async with (
        aiohttp.ClientSession(cookie_jar=_cookie_jar(base_url)) as s,
        s.post(f"{base_url}/portal/session/activate", json={"code": code}) as resp,
    ):
        assert resp.status == 401
        assert (await resp.json())["code"] == "unauthorized"
        assert SESSION_COOKIE not in resp.cookies


async def test_self_service_registration_is_gone(
    http: aiohttp.ClientSession, base_url: str
) -> None:
    async with http.post(f"{base_url}/portal/session/register", json=person()) as resp:
        assert resp.status in (404, 405)
        assert SESSION_COOKIE not in resp.cookies


async def test_portal_login_takes_code_and_wrapped_password(
    base_url: str, client: CloudsignClient
) -> None:
    """The page's login: a challenge (transport key and key parameters, the
    same shape for an unknown IIN), then IIN, code and the wrapped K_pw."""
    identity = person()
    totp, _ = await enrolled(client, password="correct horse battery", identity=identity)
    async with aiohttp.ClientSession(cookie_jar=_cookie_jar(base_url)) as s:

        async def challenge(iin: str) -> dict[str, Any]:
            async with s.post(f"{base_url}/portal/session/challenge", json={"iin": iin}) as resp:
                assert resp.status == 201
                assert resp.headers["Cache-Control"] == "no-store"
                assert SESSION_COOKIE not in resp.cookies
                result: dict[str, Any] = await resp.json()
                return result

        async def login(otp: str, password: str) -> aiohttp.ClientResponse:
            ch = await challenge(identity["iin"])
            kpw = derive_password_key(password, Argon2Params.from_json(ch["key_params"]))
            wrapped = wrap_for_transport(
                kpw, ch["transport_key_id"], base64.b64decode(ch["public_key"])
            )
            body = {"iin": identity["iin"], "otp": otp, "password_key": wrapped.to_json()}
            async with s.post(f"{base_url}/portal/session/login", json=body) as resp:
                await resp.read()
                return resp

        known, unknown = await challenge(identity["iin"]), await challenge(make_iin())
        assert set(known) == set(unknown)
        assert set(known["key_params"]) == set(unknown["key_params"])

        refused = await login(await totp.fresh_code(), "a wrong password")
        assert refused.status == 401
        assert SESSION_COOKIE not in refused.cookies
        refused = await login(totp.totp.at(time.time() - 3600), "correct horse battery")
        assert refused.status == 401

        done = await login(await totp.fresh_code(), "correct horse battery")
        assert done.status == 200
        assert done.cookies[SESSION_COOKIE]["httponly"]
        async with s.get(f"{base_url}/portal/session") as resp:
            session = await resp.json()
        assert session["owner_id"] == client.owner_id and session["scope"] == "full"


async def test_bearer_clients_need_no_csrf(
    http: aiohttp.ClientSession, client: CloudsignClient
) -> None:
    await activated(client)
    headers = {
        "Authorization": f"Bearer {client.access_token}",
        "Origin": "https://elsewhere.example",
    }
    async with http.post(f"{client.base_url}/api/v1/me/totp", headers=headers) as resp:
        assert resp.status == 201


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/portal/session/activate", {"code": "ABCD-EFGH-JKLM-NPQR-STUV"}),
        ("/portal/session/challenge", {"iin": "900101300017"}),
        ("/portal/session/login", {"iin": "900101300017", "otp": "123456", "password_key": {}}),
    ],
)
async def test_foreign_origin_cannot_log_in(
    http: aiohttp.ClientSession, base_url: str, path: str, body: dict[str, Any]
) -> None:
    async with http.post(
        f"{base_url}{path}", json=body, headers={"Origin": "https://evil.example"}
    ) as resp:
        assert resp.status == 403
        assert (await resp.json())["code"] == "csrf_failed"
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
        if name == "localStorage" and js.name == "auditor.js":
            # The auditor's pins: public values (a fingerprint, an address).
            assert set(re.findall(r"localStorage\.\w+\(([^,)]+)", text)) == {"PIN_STORE"}
            assert text.count("localStorage") == 3
            continue
        assert name not in text, js.name
