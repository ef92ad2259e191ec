"""The web portal in a real browser (Debian's Chromium, fake webcam): enrol,
sign a file and a PDF, find both in the cabinet, delete or revoke; refusals
for another person's face, a wrong TOTP code and a wrong password; and no
password or K_pw on the wire in any encoding.

SQLite only: the flow is long, and the API calls it makes run on both
databases in tests/test_enrolment_api.py and tests/test_signing.py.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from asn1crypto import pem, x509
from playwright.async_api import BrowserContext, Page, expect
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

from device_client.client import CloudsignClient, TotpDevice
from device_client.device import Argon2Params, derive_password_key
from tests.helpers import enrolled, person, totp_device
from tests.pdfs import simple_pdf
from tests.portal.browser import Traffic, leaks, shot
from tests.portal.conftest import Opener

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]

PASSWORD = "Qazaq-eli 2026 kilt!"
TIMEOUT_MS = 30_000


class Portal:
    """The pages as a citizen uses them."""

    def __init__(self, page: Page, base_url: str) -> None:
        self.page = page
        self.base = base_url

    async def open(self, view: str = "", lang: str = "en") -> None:
        await self.page.goto(f"{self.base}/portal/#/{view}")
        await self.page.select_option("#lang", lang)
        await self.ready(view or "home")

    async def ready(self, view: str) -> None:
        await expect(self.page.locator("body")).to_have_attribute(
            "data-ready", view, timeout=TIMEOUT_MS
        )

    async def go(self, view: str) -> None:
        await self.page.evaluate("v => { location.hash = '#/' + v }", view)
        await self.ready(view)

    def status(self, scope: str) -> Any:
        return self.page.locator(f"{scope} .status")

    async def face_check(self, button: str = "#face-start", status_: str = "#face-status") -> str:
        await self.page.click(button)
        status = self.page.locator(status_)
        await expect(status).to_have_class(re.compile(r"\b(ok|bad)\b"), timeout=TIMEOUT_MS)
        return await status.inner_text()

    async def sign(self, otp: str, password: str) -> None:
        await self.page.fill("#sign-otp", otp)
        await self.page.fill("#sign-password", password)
        await self.page.click("#sign-submit")


async def _totp_from_page(page: Page) -> TotpDevice:
    """What an authenticator app does with the key shown for manual entry."""
    secret = (await page.locator("#totp-secret").inner_text()).replace(" ", "")
    return totp_device(secret)


def _kpw(traffic: Traffic) -> bytes:
    (params,) = {b for b in traffic.bodies("/api/v1/me/key-params", "<")}
    return derive_password_key(PASSWORD, Argon2Params.from_json(json.loads(params)))


async def _pem(http: aiohttp.ClientSession, base_url: str, which: str) -> str:
    async with http.get(f"{base_url}/pki/ca/{which}.pem") as resp:
        assert resp.status == 200
        return await resp.text()


def _has_route(server: TestServer, method: str, path: str) -> bool:
    for route in server.app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        if route.method == method and info.get("formatter", info.get("path")) == path:
            return True
    return False


async def _enrol(portal: Portal) -> tuple[TotpDevice, dict[str, str]]:
    page = portal.page
    identity = person()
    await portal.open("enrol")
    await shot(page, "01-enrol-identity")
    await page.fill("#iin", identity["iin"])
    await page.fill("#surname", identity["surname"])
    await page.fill("#given-name", identity["given_name"])
    await page.fill("#email", identity["email"])
    await page.click("#identity-form button[type=submit]")

    boxes = page.locator("#consent-list input[type=checkbox]")
    await expect(boxes).to_have_count(2, timeout=TIMEOUT_MS)
    await shot(page, "02-enrol-consent")
    for i in range(2):
        await boxes.nth(i).check()
    await page.click("#consent-form button[type=submit]")

    guide = page.locator("#enrol-guide")
    await expect(guide).to_have_class(re.compile(r"\bok\b"), timeout=TIMEOUT_MS)
    await shot(page, "03-enrol-face")
    await page.click("#enrol-capture")

    await expect(page.locator("#totp-secret")).not_to_be_empty(timeout=TIMEOUT_MS)
    await shot(page, "04-enrol-totp")
    totp = await _totp_from_page(page)
    await page.fill("#totp-code", await totp.fresh_code())
    await page.click("#totp-form button[type=submit]")

    await expect(page.locator("[data-panel=key]")).to_be_visible(timeout=TIMEOUT_MS)
    await page.fill("#key-password", PASSWORD)
    await page.fill("#key-password2", PASSWORD)
    await shot(page, "05-enrol-key")
    await page.fill("#key-otp", await totp.fresh_code())
    await page.click("#key-form button[type=submit]")
    await expect(page.locator("#done-serial")).not_to_be_empty(timeout=TIMEOUT_MS)
    await shot(page, "06-enrol-done")
    return totp, identity


async def _sign_in_new_browser(
    open_browser: Opener,
    state: Any,
    base_url: str,
    totp: TotpDevice,
    file: Path,
    fmt: str,
    screenshot: str,
) -> tuple[BrowserContext, Portal, bytes]:
    ctx = await open_browser("obama_2.jpg", blink=True, storage_state=state)
    portal = Portal(await ctx.new_page(), base_url)
    await portal.open("sign")
    await portal.page.set_input_files("#sign-file", str(file))
    await expect(portal.page.locator("#sign-hash")).not_to_be_empty()
    await portal.page.check(f"input[name=format][value={fmt}]")
    verdict = await portal.face_check()
    assert "passed" in verdict, verdict
    await shot(portal.page, screenshot)
    async with portal.page.expect_download(timeout=TIMEOUT_MS) as info:
        await portal.sign(await totp.fresh_code(), PASSWORD)
    download = await info.value
    await expect(portal.status("#sign-form")).to_have_class(re.compile(r"\bok\b"))
    return ctx, portal, Path(await download.path()).read_bytes()


async def test_enrol_sign_cabinet_and_delete_in_the_browser(
    open_browser: Opener,
    server: TestServer,
    base_url: str,
    traffic: Traffic,
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    # Enrolment: the webcam shows the citizen with open eyes.
    ctx = await open_browser("obama_1.jpg", blink=False)
    portal = Portal(await ctx.new_page(), base_url)
    totp, identity = await _enrol(portal)
    state = await ctx.storage_state()
    cookies = {c["name"]: c for c in state["cookies"]}
    assert cookies["cloudsign_session"]["httpOnly"]
    assert cookies["cloudsign_session"]["sameSite"] == "Strict"
    assert state["origins"] == [] or all(
        "session" not in json.dumps(o.get("localStorage", [])) for o in state["origins"]
    )

    # A file: only its hash leaves; the .p7s verifies with openssl.
    content = b"Shart No. 7: the parties agree.\n" * 50
    doc = tmp_path / "contract.txt"
    doc.write_bytes(content)
    _, signer, p7s = await _sign_in_new_browser(
        open_browser, state, base_url, totp, doc, "cades", "07-sign-face-passed"
    )
    await shot(signer.page, "08-sign-done")
    root, issuing = tmp_path / "root.pem", tmp_path / "issuing.pem"
    root.write_text(await _pem(http, base_url, "root"))
    issuing.write_text(await _pem(http, base_url, "issuing"))
    (tmp_path / "contract.txt.p7s").write_bytes(p7s)
    verified = subprocess.run(
        ["openssl", "cms", "-verify", "-binary", "-inform", "DER",
         "-in", str(tmp_path / "contract.txt.p7s"), "-content", str(doc),
         "-CAfile", str(root), "-certfile", str(issuing), "-out", "/dev/null"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    assert not any(content in body for body in traffic.bodies("/sign-document"))

    # A PDF: uploaded, signed as PAdES, valid for pyHanko trusting only our root.
    pdf = tmp_path / "agreement.pdf"
    pdf.write_bytes(simple_pdf("Signed in the portal"))
    _ctx2, portal2, signed = await _sign_in_new_browser(
        open_browser, state, base_url, totp, pdf, "pades", "09-sign-pdf"
    )
    (embedded,) = PdfFileReader(io.BytesIO(signed)).embedded_signatures
    trust = x509.Certificate.load(pem.unarmor(root.read_bytes())[2])
    status = await async_validate_pdf_signature(embedded, ValidationContext(trust_roots=[trust]))
    assert status.intact and status.valid and status.trusted, status.pretty_print_details()

    # The cabinet lists both, gives each signature again, and shows the certificate.
    page = portal2.page
    await portal2.go("cabinet")
    rows = page.locator("#cab-docs tbody tr")
    await expect(rows).to_have_count(2)
    await expect(page.locator("#cab-docs")).to_contain_text("contract.txt")
    await expect(page.locator("#cab-docs")).to_contain_text("agreement.pdf")
    await expect(page.locator("#cab-creds")).to_contain_text("valid")
    await shot(page, "10-cabinet")
    link = page.locator("#cab-docs tbody tr", has_text="contract.txt").locator("a")
    async with page.expect_download() as again:
        await link.click()
    assert Path(await (await again.value).path()).read_bytes() == p7s

    # Revoke: the same three factors as signing, so a face check in a new browser.
    assert _has_route(server, "POST", "/api/v1/me/credentials/{credential_id}/revoke")
    ctx3 = await open_browser("obama_2.jpg", blink=True, storage_state=state)
    portal3 = Portal(await ctx3.new_page(), base_url)
    page = portal3.page
    await portal3.open("cabinet")
    page.on("dialog", lambda d: d.accept())
    verdict = await portal3.face_check("#cab-face-start", "#cab-face-status")
    assert "passed" in verdict, verdict
    await page.select_option("#cab-reason", "key-compromise")
    await page.fill("#cab-revoke-password", PASSWORD)
    await page.check("#cab-revoke-confirm")
    await page.fill("#cab-revoke-otp", await totp.fresh_code())
    await shot(page, "11-cabinet-revoke")
    await page.click("#cab-revoke")
    await expect(page.locator("#cab-manage-status")).to_have_class(
        re.compile(r"\bok\b"), timeout=TIMEOUT_MS
    )
    await expect(page.locator("#cab-creds")).to_contain_text("revoked")
    await expect(page.locator("#cab-revoke-form")).to_be_hidden()
    await shot(page, "12-cabinet-revoked")

    # Log in again later with IIN + TOTP.
    await page.click("#logout")
    await portal3.ready("home")
    await portal3.go("login")
    await page.fill("#login-iin", identity["iin"])
    await page.fill("#login-otp", await totp.fresh_code())
    await page.click("#login-form button[type=submit]")
    await portal3.ready("cabinet")
    await expect(page.locator("#cab-iin")).to_have_text(identity["iin"])

    # Nothing secret went over the wire, in any encoding.
    assert traffic.bodies("/api/v1/me/credentials")
    found = leaks(traffic, {"password": PASSWORD.encode(), "K_pw": _kpw(traffic)})
    assert not found, found
    assert not traffic.problems, traffic.problems
    assert not traffic.failures, traffic.failures


async def test_other_face_wrong_code_and_wrong_password_get_no_signature(
    open_browser: Opener,
    base_url: str,
    traffic: Traffic,
    client: CloudsignClient,
    tmp_path: Path,
) -> None:
    """An owner enrolled through the API logs in on the portal (IIN + TOTP);
    another person's face, a wrong code and a wrong password each end without
    a signature; then the owner deletes the key from the cabinet."""
    identity = person()
    totp, _ = await enrolled(client, password=PASSWORD, identity=identity, face="obama_1.jpg")
    doc = tmp_path / "order.txt"
    doc.write_bytes(b"Order No. 12\n")
    wrong_password = "not-my-password 42"

    # Someone else in front of the camera.
    ctx = await open_browser("biden_2.jpg", blink=True)
    portal = Portal(await ctx.new_page(), base_url)
    await portal.open("login")
    await shot(portal.page, "13-login")
    await portal.page.fill("#login-iin", identity["iin"])
    await portal.page.fill("#login-otp", await totp.fresh_code())
    await portal.page.click("#login-form button[type=submit]")
    await portal.ready("cabinet")
    state = await ctx.storage_state()
    await portal.go("sign")
    await portal.page.set_input_files("#sign-file", str(doc))
    verdict = await portal.face_check()
    assert "does not match" in verdict, verdict
    await portal.sign(await totp.fresh_code(), PASSWORD)
    await expect(portal.status("#sign-form")).to_have_text("Pass the face check first.")
    await shot(portal.page, "14-refused-other-face")

    # The owner's face, then a wrong code; then a wrong password.
    stale = totp.totp.at(time.time() - 3600)
    for otp, password, name in ((stale, PASSWORD, "otp"), (None, wrong_password, "password")):
        ctx = await open_browser("obama_2.jpg", blink=True, storage_state=state)
        portal = Portal(await ctx.new_page(), base_url)
        await portal.open("sign")
        await portal.page.set_input_files("#sign-file", str(doc))
        verdict = await portal.face_check()
        assert "passed" in verdict, verdict
        await portal.sign(otp or await totp.fresh_code(), password)
        status = portal.status("#sign-form")
        await expect(status).to_have_class(re.compile(r"\bbad\b"), timeout=TIMEOUT_MS)
        await expect(status).to_have_text("A code or the password is wrong.")
        await expect(portal.page.locator("#sign-result")).to_be_hidden()
        await shot(portal.page, f"15-refused-wrong-{name}")

    # Nothing was signed; the owner deletes the key (OTP, a clear warning).
    assert await client.documents() == []
    page = portal.page
    await portal.go("cabinet")
    await expect(page.locator("#cab-nodocs")).to_be_visible()
    page.on("dialog", lambda d: d.accept())
    await page.fill("#cab-delete-otp", await totp.fresh_code())
    await page.check("#cab-delete-confirm")
    await page.click("#cab-delete")
    await expect(page.locator("#cab-manage-status")).to_have_class(
        re.compile(r"\bok\b"), timeout=TIMEOUT_MS
    )
    await expect(page.locator("#cab-creds")).to_contain_text("key deleted")
    await expect(page.locator("#cab-delete-form")).to_be_hidden()
    await shot(page, "16-cabinet-deleted")
    assert all(c["status"] == "deleted" for c in await client.credentials())

    params = await client.key_params()
    found = leaks(
        traffic,
        {
            "password": PASSWORD.encode(),
            "wrong password": wrong_password.encode(),
            "K_pw": derive_password_key(PASSWORD, params),
            "wrong K_pw": derive_password_key(wrong_password, params),
        },
    )
    assert not found, found
    assert not traffic.problems, traffic.problems
