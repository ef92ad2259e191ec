"""A phone for the app's browser tests, and the app's screens as a citizen uses them.

The camera: Chromium plays a y4m file as the webcam and opens the file anew
each time a page opens the camera. The service refuses a frame it has seen
in an earlier burst of the same citizen, so before each face check the test
renews the clip in place (`FakeCamera.renew`: new sensor noise from a new
seed, the same face). The app switches its camera off after each burst, so
every check reads a fresh clip.

The authenticator: Chromium's virtual authenticator (CDP `WebAuthn`), a
CTAP2 platform authenticator with resident keys and user verification,
standing in for the phone's secure element and screen lock.
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from playwright.async_api import BrowserContext, CDPSession, Page, expect

from tests.portal.browser import make_clip

PASSWORD: Final = "Qazaq-eli 2026 kilt!"
ARTIFACTS: Final = Path(__file__).resolve().parents[2] / "tests" / "artifacts" / "app"
TIMEOUT_MS: Final = 30_000
#: Where the app keeps its session (this tab only).
SESSION_KEY: Final = "cloudsign.app.session"
_seeds = itertools.count(50_000)


@dataclass
class FakeCamera:
    """The webcam's clip: `face` (a file in tests/data/faces), blinking."""

    path: Path
    face: str
    blink: bool = True

    def renew(self, face: str | None = None) -> None:
        """A fresh clip in place (new noise: no frame the service has seen)."""
        if face is not None:
            self.face = face
        seed = next(_seeds)
        tmp = self.path.with_name(f"{self.path.stem}.{seed}.y4m")
        make_clip(tmp, self.face, blink=self.blink, seed=seed)
        os.replace(tmp, self.path)


@dataclass
class Phone:
    page: Page
    context: BrowserContext
    camera: FakeCamera
    cdp: CDPSession
    authenticator_id: str

    async def credentials(self) -> list[dict[str, Any]]:
        """The credentials in the phone's authenticator (CDP WebAuthn.getCredentials)."""
        answer = await self.cdp.send(
            "WebAuthn.getCredentials", {"authenticatorId": self.authenticator_id}
        )
        return list(answer["credentials"])


async def shot(page: Page, name: str) -> Path:
    """A screenshot of the whole page in tests/artifacts/app (for people, not asserts)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


class App:
    """The app's screens on a phone."""

    def __init__(self, phone: Phone, base_url: str) -> None:
        self.phone = phone
        self.page = phone.page
        self.base = base_url

    async def open(self, view: str = "", lang: str = "en", *, ready: str | None = None) -> None:
        await self.page.goto(f"{self.base}/app/#/{view}")
        await self.ready(ready or view or "home")
        await self.page.select_option("#lang", lang)

    async def ready(self, view: str) -> None:
        await expect(self.page.locator("body")).to_have_attribute(
            "data-ready", view, timeout=TIMEOUT_MS
        )

    async def go(self, view: str, *, ready: str | None = None) -> None:
        await self.page.evaluate("v => { location.hash = '#/' + v }", view)
        await self.ready(ready or view.split("/")[0])

    async def face_check(self, scope: str) -> str:
        """Run the face check of the widget in `scope` (a CSS selector) with
        a fresh clip; its verdict's text."""
        self.phone.camera.renew()
        await self.page.click(f"{scope} .face-start")
        status = self.page.locator(f"{scope} .status")
        await expect(status).to_have_class(re.compile(r"\b(ok|bad)\b"), timeout=TIMEOUT_MS)
        return await status.inner_text()

    async def token(self) -> str:
        """The app's access token, as the page keeps it (sessionStorage)."""
        saved = await self.page.evaluate(f"JSON.parse(sessionStorage.getItem('{SESSION_KEY}'))")
        assert saved is not None, "the app has no session"
        return str(saved["token"])

    async def enrol(self, code: str, password: str = PASSWORD) -> str:
        """From the desk's activation code to a key: consents, a face check,
        this phone bound, the key password and a second face check. Returns
        the certificate serial."""
        page = self.page
        await self.open("enrol")
        await page.fill("#activation-code", code)
        await shot(page, "01-enrol-code")
        await page.click("#activate-form button[type=submit]")
        boxes = page.locator("#consent-list input[type=checkbox]")
        await expect(boxes).to_have_count(2, timeout=TIMEOUT_MS)
        await expect(page.locator("#consent-list .text[lang=en]")).to_have_count(2)
        for i in range(2):
            await boxes.nth(i).check()
        await shot(page, "02-enrol-consent")
        await page.click("#consent-form button[type=submit]")

        await expect(page.locator("[data-panel=face]")).to_be_visible(timeout=TIMEOUT_MS)
        verdict = await self.face_check("#enrol-face")
        assert "passed" in verdict, verdict
        await expect(page.locator("[data-panel=device]")).to_be_visible()
        await expect(page.locator("#device-name")).to_have_value("Pixel 7")
        await shot(page, "03-enrol-device")
        await page.click("#device-bind")

        await expect(page.locator("[data-panel=key]")).to_be_visible(timeout=TIMEOUT_MS)
        await page.fill("#key-password", password)
        await page.fill("#key-password2", password)
        verdict = await self.face_check("#key-face")
        assert "passed" in verdict, verdict
        await shot(page, "04-enrol-key")
        await page.click("#key-create")
        serial = page.locator("#done-serial")
        await expect(serial).not_to_be_empty(timeout=TIMEOUT_MS)
        await shot(page, "05-enrol-done")
        return await serial.inner_text()
