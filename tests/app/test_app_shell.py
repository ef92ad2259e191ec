"""The app as a Progressive Web App, in a phone's Chromium: the service
worker registers and takes control, the manifest is linked and fetchable
with its icons, the shell comes from the worker's cache after a reload (and
with no connection at all), and no API answer is ever cached. And the
values the phone computes before approving (approval.js) are the service's
(mobile_api/codes.py)."""

from __future__ import annotations

import hashlib
import io
import json
import random
import re
import uuid

import aiohttp
import pytest
from PIL import Image
from playwright.async_api import Response, expect

from mobile_api import codes
from mobile_api.webapp import APP_DIR
from tests.app.conftest import PhoneOpener
from tests.app.phone import TIMEOUT_MS, App
from tests.portal.browser import Traffic

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]


def _shell() -> list[str]:
    source = (APP_DIR / "sw.js").read_text(encoding="utf-8")
    block = source.split("const SHELL = [", 1)[1].split("];", 1)[0]
    return re.findall(r'"([^"]+)"', block)


async def test_the_service_worker_serves_the_shell_from_its_cache(
    open_phone: PhoneOpener, base_url: str, http: aiohttp.ClientSession, traffic: Traffic
) -> None:
    phone = await open_phone()
    app = App(phone, base_url)
    page = phone.page
    await app.open()
    scope = await page.evaluate("navigator.serviceWorker.ready.then(r => r.scope)")
    assert scope == f"{base_url}/app/"
    await page.wait_for_function("navigator.serviceWorker.controller !== null", timeout=TIMEOUT_MS)
    assert await page.evaluate("navigator.serviceWorker.controller.scriptURL") == (
        f"{base_url}/app/sw.js"
    )

    # The manifest is linked, fetchable, and names the app, its scope and its icons.
    href = await page.get_attribute("link[rel=manifest]", "href")
    assert href == "/app/manifest.webmanifest"
    async with http.get(base_url + href) as resp:
        assert resp.status == 200
        assert resp.content_type == "application/manifest+json"
        manifest = json.loads(await resp.text())
    assert manifest["name"] == "cloudsign"
    assert manifest["start_url"] == "/app/" and manifest["scope"] == "/app/"
    assert manifest["display"] == "standalone"
    sizes = set()
    for icon in manifest["icons"]:
        async with http.get(base_url + icon["src"]) as resp:
            assert resp.status == 200 and resp.content_type == "image/png"
            with Image.open(io.BytesIO(await resp.read())) as im:
                assert icon["sizes"] == f"{im.width}x{im.height}"
                sizes.add(im.width)
    assert {192, 512} <= sizes

    # The cache holds the shell, and only the shell.
    cache_names = await page.evaluate("caches.keys()")
    assert len(cache_names) == 1 and cache_names[0].startswith("cloudsign-app-")
    assert "__SHELL_VERSION__" not in cache_names[0]
    cached = await page.evaluate(
        "caches.keys().then(([n]) => caches.open(n)).then(c => c.keys())"
        ".then(rs => rs.map(r => r.url))"
    )
    assert sorted(cached) == sorted(base_url + p for p in _shell())

    # After a reload, the page and every module come from the worker's cache.
    responses: list[Response] = []
    page.on("response", lambda r: responses.append(r))
    await page.reload()
    await app.ready("home")
    shell = {base_url + p for p in _shell()}
    loaded = {r.url: r for r in responses if r.url in shell}
    for path in ("/app/", "/app/js/main.js", "/app/app.css", "/portal/static/js/crypto.js"):
        assert loaded[base_url + path].from_service_worker, path

    # An API answer passes the worker by: from the network, and never cached.
    texts = await page.evaluate(
        "fetch('/api/v1/consent-texts?language=en').then(r => r.json()).then(t => t.length)"
    )
    assert texts == 2
    api = [r for r in responses if "/api/v1/consent-texts" in r.url]
    assert api and not any(r.from_service_worker for r in api)
    again = await page.evaluate(
        "caches.keys().then(([n]) => caches.open(n)).then(c => c.keys())"
        ".then(rs => rs.map(r => r.url))"
    )
    assert sorted(again) == sorted(cached)

    # No connection at all: the app still starts, from the cache.
    await phone.context.set_offline(True)
    try:
        await page.reload()
        await app.ready("home")
        await expect(page.locator("#home-h")).to_be_visible()
    finally:
        await phone.context.set_offline(False)
    assert not traffic.problems, traffic.problems


async def test_the_phone_computes_the_services_code_and_challenge(
    open_phone: PhoneOpener, base_url: str
) -> None:
    """approval.js against mobile_api/codes.py, on fixed and random inputs."""
    phone = await open_phone(service_workers="block")
    app = App(phone, base_url)
    await app.open()
    rng = random.Random(20260)
    cases = [("00000000-0000-0000-0000-000000000000", [b"\0" * 32], b"\0" * 16)]
    for n in (1, 2, 3, 8):
        cases.append(
            (
                str(uuid.UUID(int=rng.getrandbits(128))),
                [hashlib.sha256(rng.randbytes(rng.randrange(1, 64))).digest() for _ in range(n)],
                rng.randbytes(16),
            )
        )
    for request_id, hashes, nonce in cases:
        got = await phone.page.evaluate(
            """async ([id, hashes, nonce]) => {
                const a = await import('/app/js/approval.js');
                const bytes = (h) => Uint8Array.from(h.match(/../g), (x) => parseInt(x, 16));
                const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
                const c = await a.commitment(id, 'sha256', hashes.map(bytes));
                const code = await a.verificationCode(c);
                const challenge = await a.approvalChallenge(c, code, bytes(nonce));
                return [hex(c), code, hex(challenge)];
            }""",
            [request_id, [h.hex() for h in hashes], nonce.hex()],
        )
        commitment = codes.commitment(request_id, "sha256", hashes)
        code = codes.verification_code(commitment)
        assert got == [
            commitment.hex(),
            code,
            codes.approval_challenge(commitment, code, nonce).hex(),
        ]


TITLES = {
    "kk": "Қолтаңбаңыз — телефоныңызда",
    "ru": "Ваша подпись — в вашем телефоне",
    "en": "Your signature, on your phone",
}


async def test_three_languages_on_a_phone(open_phone: PhoneOpener, base_url: str) -> None:
    """Every screen fits the phone's width in every language; the language
    follows the portal's preference; the desk's link fills the code in and
    leaves the address bar."""
    phone = await open_phone(service_workers="block")
    app = App(phone, base_url)
    page = phone.page
    await app.open()
    for lang, title in TITLES.items():
        await page.select_option("#lang", lang)
        await expect(page.locator("html")).to_have_attribute("lang", lang)
        await expect(page.locator("#home-h")).to_have_text(title)
        assert await page.evaluate("document.documentElement.scrollWidth <= innerWidth")
    code = "ABCD-EFGH-JKLM-NPQR-STUV"
    await page.goto(f"{base_url}/app/#/activate/{code}")
    await app.ready("enrol")
    await expect(page.locator("#activation-code")).to_have_value(code)
    assert page.url.endswith("/app/#/enrol")
    # The face widgets, drawn from a template, follow the language too.
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    await expect(page.locator("#enrol-face .face-start")).to_have_text("Start the face check")
    await page.select_option("#lang", "ru")
    await expect(page.locator("#enrol-h")).to_have_text("Настройка приложения")
    await expect(page.locator("#enrol-face .face-start")).to_have_text("Начать проверку лица")
    await expect(page.locator("[data-step=device]")).to_have_text("Этот телефон")
    assert await page.evaluate("document.documentElement.scrollWidth <= innerWidth")
    # Screens for a logged-in owner send an anonymous phone to the login.
    for view in ("inbox", "sign", "devices", "request/00000000-0000-0000-0000-000000000000"):
        await page.evaluate("v => { location.hash = '#/' + v }", view)
        await app.ready("login")
    await expect(page.locator(".tabs")).to_be_hidden()
    # One preference for the app and the portal (same origin, the portal's key).
    await page.goto(f"{base_url}/portal/")
    await expect(page.locator("body")).to_have_attribute("data-ready", "home")
    await expect(page.locator("html")).to_have_attribute("lang", "ru")
