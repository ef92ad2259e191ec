"""The web portal in a real browser (Debian's Chromium, fake webcam), from
the registration desk on: the desk proofs the citizen and hands out an
activation code; the citizen opens the code's link, consents in the page's
language, sets up TOTP, passes a face check against the desk's photo,
chooses a key password and gets a certificate; signs a file and a PDF, finds
both in the cabinet, logs out, logs in again with IIN + TOTP + password and
deletes the account with every factor. Another owner revokes the
certificate, another deletes the key, both with every factor.
Refusals: another person's face (at enrolment and at signing), a wrong TOTP
code and a wrong password (at login and at signing), a spent activation
code, and a lock after repeated wrong passwords. No password or K_pw goes
over the wire in any encoding.

SQLite only: the flow is long, and the API calls it makes run on both
databases in the service tests.
"""

from __future__ import annotations

import hashlib
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

from cloudsign.web.auth import SESSION_COOKIE
from device_client.authenticator import SoftAuthenticator
from device_client.client import ApiError, CloudsignClient, TotpDevice
from device_client.device import Argon2Params, derive_password_key
from tests.helpers import enrolled, new_client, passed_face_check, person, totp_device
from tests.pdfs import simple_pdf
from tests.portal.browser import Traffic, leaks, shot
from tests.portal.conftest import Opener, Proofer

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]

PASSWORD = "Qazaq-eli 2026 kilt!"
WRONG_PASSWORD = "not-my-password 42"
TIMEOUT_MS = 30_000
LOGIN_REFUSED = "The IIN, the code or the password is wrong."


class Portal:
    """The pages as a citizen uses them."""

    def __init__(self, page: Page, base_url: str) -> None:
        self.page = page
        self.base = base_url

    async def open(self, view: str = "", lang: str = "en", *, ready: str | None = None) -> None:
        await self.page.goto(f"{self.base}/portal/#/{view}")
        await self.page.select_option("#lang", lang)
        await self.ready(ready or view or "home")

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

    async def login(self, iin: str, otp: str, password: str) -> None:
        """Fill and send the login form; the caller waits for the outcome."""
        await self.page.fill("#login-iin", iin)
        await self.page.fill("#login-otp", otp)
        await self.page.fill("#login-password", password)
        async with self.page.expect_response(
            lambda r: r.url.endswith("/portal/session/login"), timeout=TIMEOUT_MS
        ):
            await self.page.click("#login-form button[type=submit]")

    async def manage(self, action: str, totp: TotpDevice, password: str) -> None:
        """A cabinet change (revoke, delete_key, delete_account) after a
        passed face check, with a code taken then; every confirmation accepted."""
        page = self.page
        await page.check(f"input[name=cab-action][value={action}]")
        verdict = await self.face_check("#cab-face-start", "#cab-face-status")
        assert "passed" in verdict, verdict
        await page.fill("#cab-otp", await totp.fresh_code())
        await page.fill("#cab-password", password)
        await page.check("#cab-confirm")
        page.once("dialog", lambda d: d.accept())
        await page.click("#cab-submit")


async def _totp_from_page(page: Page) -> TotpDevice:
    """What an authenticator app does with the key shown for manual entry."""
    secret = (await page.locator("#totp-secret").inner_text()).replace(" ", "")
    return totp_device(secret)


def _kpw(traffic: Traffic, password: str = PASSWORD) -> bytes:
    (params,) = set(traffic.bodies("/api/v1/me/key-params", "<"))
    return derive_password_key(password, Argon2Params.from_json(json.loads(params)))


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


async def _portal_session(page: Page) -> dict[str, Any]:
    """What the page's cookie is now, as the server sees it."""
    result: dict[str, Any] = await page.evaluate(
        "fetch('/portal/session', {credentials: 'same-origin'}).then(r => r.json())"
    )
    return result


async def _consent_and_totp(portal: Portal, lang: str) -> TotpDevice:
    """The steps after the code: the consent texts in the page's language,
    then TOTP from the key shown for manual entry."""
    page = portal.page
    texts = page.locator(f"#consent-list .text[lang={lang}]")
    await expect(texts).to_have_count(2, timeout=TIMEOUT_MS)
    boxes = page.locator("#consent-list input[type=checkbox]")
    await expect(boxes).to_have_count(2)
    for i in range(2):
        await boxes.nth(i).check()
    await page.click("#consent-form button[type=submit]")

    await expect(page.locator("#totp-secret")).not_to_be_empty(timeout=TIMEOUT_MS)
    totp = await _totp_from_page(page)
    await page.fill("#totp-code", await totp.fresh_code())
    await page.click("#totp-form button[type=submit]")
    await expect(page.locator("[data-panel=face]")).to_be_visible(timeout=TIMEOUT_MS)
    return totp


async def _enrol_from_link(portal: Portal, code: str) -> TotpDevice:
    """The desk's link opens the enrolment; consent in Russian, the rest in English."""
    page = portal.page
    await portal.open(f"activate/{code}", lang="ru", ready="enrol")
    await expect(page.locator("#activation-code")).to_have_value(code)
    assert code not in page.url  # the spent code stays out of the history
    await shot(page, "01-enrol-code")
    await page.click("#activate-form button[type=submit]")
    await expect(page.locator("[data-panel=consent]")).to_be_visible(timeout=TIMEOUT_MS)
    await shot(page, "02-enrol-consent-ru")
    totp = await _consent_and_totp(portal, "ru")
    await page.select_option("#lang", "en")
    await shot(page, "03-enrol-face")

    verdict = await portal.face_check("#enrol-face-start", "#enrol-face-status")
    assert "passed" in verdict, verdict
    await expect(page.locator("[data-panel=key]")).to_be_visible()
    await page.fill("#key-password", PASSWORD)
    await page.fill("#key-password2", PASSWORD)
    await page.fill("#key-otp", await totp.fresh_code())
    await shot(page, "04-enrol-key")
    await page.click("#key-form button[type=submit]")
    await expect(page.locator("#done-serial")).not_to_be_empty(timeout=TIMEOUT_MS)
    await shot(page, "05-enrol-done")
    return totp


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


async def test_desk_code_enrol_sign_login_and_delete_the_account_in_the_browser(
    open_browser: Opener,
    proof: Proofer,
    base_url: str,
    traffic: Traffic,
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    # The desk proofs the citizen (their live face, obama_1) and prints the code.
    identity, code = await proof(face="obama_1.jpg")

    # Enrolment: the webcam shows the citizen, blinking, in another picture.
    ctx = await open_browser("obama_2.jpg", blink=True)
    portal = Portal(await ctx.new_page(), base_url)
    totp = await _enrol_from_link(portal, code)
    consents = [json.loads(b) for b in traffic.bodies("/api/v1/me/consents")]
    assert sorted(c["kind"] for c in consents) == ["cloud_key_storage", "personal_data"]
    assert {c["language"] for c in consents} == {"ru"}
    assert (await _portal_session(portal.page))["scope"] == "full"
    state = await ctx.storage_state()
    cookies = {c["name"]: c for c in state["cookies"]}
    session_cookie = cookies[SESSION_COOKIE]
    assert session_cookie["httpOnly"] and session_cookie["secure"]
    assert session_cookie["sameSite"] == "Strict" and session_cookie["path"] == "/"
    assert all("session" not in json.dumps(o.get("localStorage", [])) for o in state["origins"])

    # A file: only its hash leaves; the .p7s verifies with openssl.
    content = b"Shart No. 7: the parties agree.\n" * 50
    doc = tmp_path / "contract.txt"
    doc.write_bytes(content)
    _, signer, p7s = await _sign_in_new_browser(
        open_browser, state, base_url, totp, doc, "cades", "06-sign-face-passed"
    )
    await shot(signer.page, "07-sign-done")
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
    ctx2, portal2, signed = await _sign_in_new_browser(
        open_browser, state, base_url, totp, pdf, "pades", "08-sign-pdf"
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
    await shot(page, "09-cabinet")
    link = page.locator("#cab-docs tbody tr", has_text="contract.txt").locator("a")
    async with page.expect_download() as again:
        await link.click()
    assert Path(await (await again.value).path()).read_bytes() == p7s

    # Log out; log in again with IIN + TOTP + key password.
    await page.click("#logout")
    await portal2.ready("home")
    assert (await _portal_session(page))["owner_id"] is None
    await portal2.go("login")
    await shot(page, "10-login")
    await portal2.login(identity["iin"], await totp.fresh_code(), PASSWORD)
    await portal2.ready("cabinet")
    await expect(page.locator("#cab-iin")).to_have_text(identity["iin"])
    assert (await _portal_session(page))["scope"] == "full"
    state = await ctx2.storage_state()

    # Delete the account: every factor (the key is still there), in a new browser.
    ctx3 = await open_browser("obama_2.jpg", blink=True, storage_state=state)
    portal3 = Portal(await ctx3.new_page(), base_url)
    await portal3.open("cabinet")
    await shot(portal3.page, "11-cabinet-delete-account")
    await portal3.manage("delete_account", totp, PASSWORD)
    page = portal3.page
    await portal3.ready("home")
    await expect(page.locator("#flash")).to_have_text("Your account is deleted.")
    await shot(page, "12-account-deleted")
    assert (await _portal_session(page))["owner_id"] is None
    assert SESSION_COOKIE not in {c["name"] for c in await ctx3.cookies()}

    # Nothing secret went over the wire, in any encoding; nothing was refused.
    assert traffic.bodies("/api/v1/me/credentials")
    assert traffic.bodies("/portal/session/login")
    found = leaks(traffic, {"password": PASSWORD.encode(), "K_pw": _kpw(traffic)})
    assert not found, found
    assert not traffic.problems, traffic.problems
    assert not traffic.failures, traffic.failures

    # The account is gone: the same factors log no one in.
    async with aiohttp.ClientSession() as fresh:
        with pytest.raises(ApiError) as refused:
            await new_client(base_url, fresh).login(
                identity["iin"], await totp.fresh_code(), PASSWORD
            )
    assert refused.value.status == 401


async def test_another_face_and_a_spent_code_get_no_key(
    open_browser: Opener, proof: Proofer, base_url: str, traffic: Traffic
) -> None:
    """The desk proofed obama; biden in front of the camera passes the code,
    the consents and TOTP, and is refused at the face check, so no key. The
    code, typed in by hand (lower case, no dashes), is spent: a second
    browser gets nothing for it."""
    _, code = await proof(face="obama_1.jpg")
    ctx = await open_browser("biden_2.jpg", blink=True)
    portal = Portal(await ctx.new_page(), base_url)
    page = portal.page
    await portal.open("enrol")
    await page.fill("#activation-code", code.replace("-", "").lower())
    await page.click("#activate-form button[type=submit]")
    await _consent_and_totp(portal, "en")
    verdict = await portal.face_check("#enrol-face-start", "#enrol-face-status")
    assert "does not match" in verdict, verdict
    await expect(page.locator("[data-panel=key]")).to_be_hidden()
    await expect(page.locator("[data-panel=face]")).to_be_visible()
    assert (await _portal_session(page))["scope"] == "enrolment"
    assert not [n for n, _ in traffic.items if n.startswith("> POST") and "/me/credentials" in n]
    await shot(page, "14-refused-other-face-at-enrolment")

    # The same code again, in a browser of its own: refused, no cookie.
    other = await ctx.browser.new_context() if ctx.browser else None
    assert other is not None
    other.on("page", traffic.attach)
    second = Portal(await other.new_page(), base_url)
    await second.open("enrol")
    await second.page.fill("#activation-code", code)
    await second.page.click("#activate-form button[type=submit]")
    status = second.status("#activate-form")
    await expect(status).to_have_class(re.compile(r"\bbad\b"), timeout=TIMEOUT_MS)
    await expect(status).to_contain_text("unknown, already used or expired")
    await expect(second.page.locator("[data-panel=consent]")).to_be_hidden()
    assert SESSION_COOKIE not in {c["name"] for c in await other.cookies()}
    await shot(second.page, "15-refused-spent-code")
    await other.close()
    assert not traffic.problems, traffic.problems


async def test_wrong_code_wrong_password_and_other_face_get_no_signature(
    open_browser: Opener,
    base_url: str,
    traffic: Traffic,
    client: CloudsignClient,
    tmp_path: Path,
) -> None:
    """An owner enrolled through the API logs in on the portal: a wrong code
    and a wrong password are refused at login; another person's face, a
    wrong code and a wrong password each end without a signature; then the
    owner deletes the key from the cabinet with every factor."""
    identity = person()
    totp, _ = await enrolled(client, password=PASSWORD, identity=identity, face="obama_1.jpg")
    params = await client.key_params()
    doc = tmp_path / "order.txt"
    doc.write_bytes(b"Order No. 12\n")
    stale = totp.totp.at(time.time() - 3600)

    # Login: a wrong code, then a wrong password, then right; the webcam
    # shows someone else.
    ctx = await open_browser("biden_2.jpg", blink=True)
    portal = Portal(await ctx.new_page(), base_url)
    page = portal.page
    await portal.open("login")
    status = portal.status("#login-form")
    for otp, password in ((stale, PASSWORD), (None, WRONG_PASSWORD)):
        await portal.login(identity["iin"], otp or await totp.fresh_code(), password)
        await expect(status).to_have_text(LOGIN_REFUSED)
        await expect(status).to_have_class(re.compile(r"\bbad\b"))
        assert await page.evaluate("document.body.dataset.current") == "login"
    await shot(page, "20-login-refused")
    await portal.login(identity["iin"], await totp.fresh_code(), PASSWORD)
    await portal.ready("cabinet")
    state = await ctx.storage_state()

    # Someone else in front of the camera.
    await portal.go("sign")
    await page.set_input_files("#sign-file", str(doc))
    verdict = await portal.face_check()
    assert "does not match" in verdict, verdict
    await portal.sign(await totp.fresh_code(), PASSWORD)
    await expect(portal.status("#sign-form")).to_have_text("Pass the face check first.")
    await shot(page, "21-refused-other-face")

    # The owner's face, then a wrong code; then a wrong password.
    for otp, password, name in ((stale, PASSWORD, "otp"), (None, WRONG_PASSWORD, "password")):
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
        await shot(portal.page, f"22-refused-wrong-{name}")

    # Nothing was signed; the owner deletes the key: face, code and password.
    assert await client.documents() == []
    ctx = await open_browser("obama_2.jpg", blink=True, storage_state=state)
    portal = Portal(await ctx.new_page(), base_url)
    page = portal.page
    await portal.open("cabinet")
    await expect(page.locator("#cab-nodocs")).to_be_visible()
    await portal.manage("delete_key", totp, PASSWORD)
    await expect(page.locator("#cab-manage-status")).to_have_class(
        re.compile(r"\bok\b"), timeout=TIMEOUT_MS
    )
    await expect(page.locator("#cab-creds")).to_contain_text("key deleted")
    await expect(page.locator("input[name=cab-action][value=delete_key]")).to_be_disabled()
    # Without a key, deleting the account would need the face check alone.
    await expect(page.locator("#cab-factors")).to_be_hidden()
    await expect(page.locator("#cab-face-alone")).to_be_visible()
    await shot(page, "23-cabinet-key-deleted")
    assert all(c["status"] == "deleted" for c in await client.credentials())

    found = leaks(
        traffic,
        {
            "password": PASSWORD.encode(),
            "wrong password": WRONG_PASSWORD.encode(),
            "K_pw": derive_password_key(PASSWORD, params),
            "wrong K_pw": derive_password_key(WRONG_PASSWORD, params),
        },
    )
    assert not found, found
    assert not traffic.problems, traffic.problems


async def test_repeated_wrong_passwords_lock_the_login(
    open_browser: Opener, base_url: str, traffic: Traffic, client: CloudsignClient
) -> None:
    """Five wrong key passwords in a row lock the IIN's logins: the page says
    so, with the wait from Retry-After, in the page's language."""
    identity = person()
    totp, _ = await enrolled(client, password=PASSWORD, identity=identity)
    ctx = await open_browser("obama_1.jpg", blink=False)
    portal = Portal(await ctx.new_page(), base_url)
    await portal.open("login")
    status = portal.status("#login-form")
    for _ in range(5):
        await portal.login(identity["iin"], await totp.fresh_code(), WRONG_PASSWORD)
        await expect(status).to_have_text(LOGIN_REFUSED)
    # Locked now, even for the right password.
    await portal.login(identity["iin"], await totp.fresh_code(), PASSWORD)
    await expect(status).to_have_text(
        "Too many failed attempts: this is locked. Try again in 15 min."
    )
    await expect(status).to_have_class(re.compile(r"\blimit\b"))
    await shot(portal.page, "24-login-locked")
    await portal.page.select_option("#lang", "ru")
    await portal.login(identity["iin"], await totp.fresh_code(), PASSWORD)
    await expect(status).to_have_text(
        "Слишком много неудачных попыток: доступ заблокирован. Повторите через 15 мин."
    )
    assert any("423" in f for f in traffic.failures), traffic.failures
    found = leaks(traffic, {"password": PASSWORD.encode(), "wrong": WRONG_PASSWORD.encode()})
    assert not found, found
    assert not traffic.problems, traffic.problems


async def test_revoke_in_the_cabinet_with_every_factor(
    open_browser: Opener,
    server: TestServer,
    base_url: str,
    traffic: Traffic,
    client: CloudsignClient,
) -> None:
    """Log in (no camera), then revoke in the same browser: the face check is
    the browser's first, the code and the password go with it. The key can
    no longer sign."""
    assert _has_route(server, "POST", "/api/v1/me/credentials/{credential_id}/revoke")
    identity = person()
    totp, cred = await enrolled(client, password=PASSWORD, identity=identity)
    ctx = await open_browser("obama_2.jpg", blink=True)
    portal = Portal(await ctx.new_page(), base_url)
    page = portal.page
    await portal.open("login")
    await portal.login(identity["iin"], await totp.fresh_code(), PASSWORD)
    await portal.ready("cabinet")
    await page.select_option("#cab-reason", "key-compromise")
    await portal.manage("revoke", totp, PASSWORD)
    await expect(page.locator("#cab-manage-status")).to_have_class(
        re.compile(r"\bok\b"), timeout=TIMEOUT_MS
    )
    await expect(page.locator("#cab-creds")).to_contain_text("revoked")
    await expect(page.locator("input[name=cab-action][value=revoke]")).to_be_disabled()
    await shot(page, "13-cabinet-revoked")
    (listed,) = await client.credentials()
    assert listed["credential_id"] == cred["credential_id"]
    assert listed["certificate_status"] == "revoked"

    # The sign page says at once why nothing can be signed now.
    await portal.go("sign")
    await expect(portal.status("#sign-form")).to_contain_text("revoked")
    await expect(page.locator("#sign-submit")).to_be_disabled()
    await expect(page.locator("#face-start")).to_be_disabled()
    assert await client.documents() == []
    found = leaks(traffic, {"password": PASSWORD.encode(), "K_pw": _kpw(traffic)})
    assert not found, found
    assert not traffic.problems, traffic.problems
    assert not traffic.failures, traffic.failures


async def test_a_lost_phone_is_revoked_in_the_cabinet_with_face_and_password(
    open_browser: Opener,
    base_url: str,
    traffic: Traffic,
    client: CloudsignClient,
) -> None:
    """An owner with a code and a bound phone loses the phone: the cabinet
    lists it and revokes it with a face check and the key password (no code
    asked: the phone may have been the possession factor). Its pending
    request ends, and it is no factor any more."""
    identity = person()
    totp, _cred = await enrolled(client, password=PASSWORD, identity=identity)
    phone = SoftAuthenticator(origin=client.base_url)
    face = await passed_face_check(client)
    await client.bind_device(
        phone, "Pixel 7", face_challenge_id=face, password=PASSWORD, otp=await totp.fresh_code()
    )
    pending = await client.create_signing_request(
        [{"name": "h", "format": "raw", "hash": hashlib.sha256(b"lost").digest()}], "text"
    )

    ctx = await open_browser("obama_2.jpg", blink=True)
    portal = Portal(await ctx.new_page(), base_url)
    page = portal.page
    await portal.open("login")
    await portal.login(identity["iin"], await totp.fresh_code(), PASSWORD)
    await portal.ready("cabinet")
    await expect(page.locator("#cab-devices")).to_contain_text("Pixel 7")
    await page.check("input[name=cab-action][value=revoke_device]")
    await expect(page.locator("#cab-otp")).to_be_hidden()
    verdict = await portal.face_check("#cab-face-start", "#cab-face-status")
    assert "passed" in verdict, verdict
    await page.fill("#cab-password", PASSWORD)
    await page.check("#cab-confirm")
    page.once("dialog", lambda d: d.accept())
    await page.click("#cab-submit")
    await expect(page.locator("#cab-manage-status")).to_have_class(
        re.compile(r"\bok\b"), timeout=TIMEOUT_MS
    )
    await expect(page.locator("#cab-devices")).to_contain_text("revoked")
    await expect(page.locator("input[name=cab-action][value=revoke_device]")).to_be_disabled()
    await shot(page, "14-cabinet-phone-revoked")
    assert [d["status"] for d in await client.devices()] == ["revoked"]
    assert (await client.signing_request(pending["request_id"]))["status"] == "failed"
    with pytest.raises(ApiError):
        await new_client(client.base_url, http=client.session).login(
            identity["iin"], None, PASSWORD, device=phone
        )
    found = leaks(traffic, {"password": PASSWORD.encode(), "K_pw": _kpw(traffic)})
    assert not found, found
    assert not traffic.problems, traffic.problems
    assert not traffic.failures, traffic.failures
