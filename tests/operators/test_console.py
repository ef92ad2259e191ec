"""The operator console: its files and headers over HTTP and its cookie
session's CSRF rules (both databases); then, in Debian's Chromium with a
fake webcam (SQLite only), a registration officer proofs a citizen at the
desk, the citizen finishes on their device and gets a certificate, a
revocation officer asks for a CA-compromise notice, a security officer
approves it, and the notice is public; and a new operator sets up their
account with the setup code a security officer gave them. The CSP holds
throughout.
"""

from __future__ import annotations

import re
import secrets
import uuid
from typing import Any

import aiohttp
import pytest
from asn1crypto import pem, x509
from playwright.async_api import BrowserContext, Page, expect

from cloudsign.operators import Role
from cloudsign.operators.console import CONSOLE_DIR
from cloudsign.portal.api import SECURITY_HEADERS
from cloudsign.status.operations import NOTICE_CA_COMPROMISE, REVOKE_BULK, REVOKE_CA_COMPROMISE
from cloudsign.status.reasons import GROUNDS
from cloudsign.web.auth import CSRF_HEADER, OPERATOR_COOKIE
from tests.helpers import REPO, new_client, passed_face_check, person, totp_device
from tests.portal.browser import Traffic, leaks
from tests.portal.conftest import Opener
from tests.staff import OperatorClient, Staff

TIMEOUT_MS = 60_000
ARTIFACTS = REPO / "tests" / "artifacts" / "operators"
SIGN_IN_TITLES = {"kk": "Оператордың кіруі", "ru": "Вход оператора", "en": "Operator sign-in"}
PASSWORD = "correct horse battery"
#: Records every CSP violation the page reports, before any page script runs.
CSP_PROBE = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) =>
  window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`));
"""


async def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def _get(http: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[int, Any, bytes]:
    async with http.get(url, allow_redirects=False, **kw) as resp:
        return resp.status, resp.headers, await resp.read()


# -- over HTTP ---------------------------------------------------------------------------


async def test_the_console_carries_the_portals_headers_and_serves_only_its_own_files(
    staff: Staff, http: aiohttp.ClientSession, base_url: str
) -> None:
    status, headers, html = await _get(http, f"{staff.url}/console/")
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    for name, value in SECURITY_HEADERS.items():
        assert headers[name] == value, name
    csp = headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert headers["Cache-Control"] == "no-store"
    page = html.decode()
    # No inline script, style or handler; nothing from another origin.
    assert not re.search(r"<script(?![^>]*\bsrc=)", page)
    assert not re.search(r"<style|\sstyle=|\son[a-z]+=", page)
    assert "http://" not in page and "https://" not in page

    shipped = [p for p in CONSOLE_DIR.rglob("*") if p.is_file()]
    assert {p.suffix for p in shipped} == {".html", ".css", ".js", ".svg"}
    for path in shipped:
        name = path.relative_to(CONSOLE_DIR).as_posix()
        status, headers, body = await _get(http, f"{staff.url}/console/static/{name}")
        assert status == 200, name
        assert body == path.read_bytes()
        assert headers["Content-Security-Policy"] == SECURITY_HEADERS["Content-Security-Policy"]
        assert headers["X-Frame-Options"] == "DENY" and headers["Cache-Control"] == "no-cache"
        if path.suffix == ".js":
            assert headers["Content-Type"] == "text/javascript; charset=utf-8"
            text = body.decode()
            # The tokens live in memory only: web storage holds the language, nothing else.
            calls = re.findall(r"\b(local|session)Storage\.(\w+)\(([^)]*)\)", text)
            assert all(c[0] == "local" and c[2].startswith("STORE_KEY") for c in calls), name
            assert "document.cookie" not in text, name

    # The portal's vendored QR library, from the console's own origin.
    status, headers, body = await _get(http, f"{staff.url}/console/vendor/qrcode.js")
    assert status == 200 and b"export" in body
    assert headers["Content-Type"] == "text/javascript; charset=utf-8"
    for missing in (
        "/console/vendor/hash-wasm.js",
        "/console/static/../console.py",
        "/console/static/%2e%2e/console.py",
        "/console/static/js/nothere.js",
        "/console/static/" + "a" * 200 + ".js",
        "/portal/",
    ):
        status, headers, _ = await _get(http, staff.url + missing)
        assert status == 404, missing
        assert headers["X-Frame-Options"] == "DENY", missing
    status, headers, _ = await _get(http, f"{staff.url}/console")
    assert status == 302 and headers["Location"] == "/console/"
    assert headers["Content-Security-Policy"] == SECURITY_HEADERS["Content-Security-Policy"]
    # API answers, errors included, get the headers and stay out of caches.
    status, headers, _ = await _get(http, f"{staff.url}/operator/api/v1/me")
    assert status == 401 and headers["Cache-Control"] == "no-store"
    assert headers["X-Content-Type-Options"] == "nosniff"
    # None of it on the public listener.
    for public in ("/console/", "/console/static/js/app.js", "/console/session"):
        status, _, _ = await _get(http, base_url + public)
        assert status == 404, public


async def test_the_console_cookie_session_needs_the_csrf_header_and_the_origin(
    staff: Staff, http: aiohttp.ClientSession
) -> None:
    op = staff.auditor
    origin = {"Origin": staff.url}
    async with http.post(
        f"{staff.url}/console/session",
        json={"username": op.username, "password": op.password, "otp": await op.totp.fresh_code()},
        headers=origin,
    ) as resp:
        assert resp.status == 200
        body = await resp.json()
        morsel = resp.cookies[OPERATOR_COOKIE]
    assert set(body) == {"operator", "csrf_token"}  # never the session token itself
    assert body["operator"]["username"] == op.username
    assert morsel["httponly"] and morsel["secure"] and morsel["samesite"] == "Strict"
    assert morsel["path"] == "/" and not morsel["domain"]
    cookie = {"Cookie": f"{OPERATOR_COOKIE}={morsel.value}"}
    csrf = {CSRF_HEADER: body["csrf_token"]}

    # Safe requests ride on the cookie alone; the page learns who it is.
    status, _, raw = await _get(http, f"{staff.url}/operator/api/v1/me", headers=cookie)
    assert status == 200 and op.username.encode() in raw
    async with http.get(f"{staff.url}/console/session", headers=cookie) as resp:
        assert await resp.json() == body
    # Unsafe ones need the CSRF header and a same-origin Origin.
    reject = f"{staff.url}/operator/api/v1/approvals/{uuid.uuid4()}/reject"
    for headers in (
        {**cookie, **origin},
        {**cookie, **origin, CSRF_HEADER: "x" * 43},
        {**cookie, **csrf, "Origin": "http://evil.example"},
        {**cookie, **csrf, "Origin": staff.url.rsplit(":", 1)[0] + ":1"},
    ):
        async with http.post(reject, headers=headers) as resp:
            assert resp.status == 403, headers
            assert (await resp.json())["code"] == "csrf_failed"
    async with http.post(reject, headers={**cookie, **csrf, **origin}) as resp:
        assert resp.status == 404  # through the CSRF check: no such approval
    # A sign-in from another origin is refused too.
    async with http.post(
        f"{staff.url}/console/session",
        json={"username": op.username, "password": op.password, "otp": await op.totp.fresh_code()},
        headers={"Origin": "http://evil.example"},
    ) as resp:
        assert resp.status == 403
    # So is a new operator's set-up, which needs no session either.
    for path, refused in (
        ("/operator/api/v1/setup", {"setup_code": "x" * 20, "password": "twelve chars or more"}),
        ("/operator/api/v1/setup/confirm", {"setup_code": "x" * 20, "otp": "123456"}),
    ):
        async with http.post(
            staff.url + path, json=refused, headers={"Origin": "http://evil.example"}
        ) as resp:
            assert resp.status == 403, path
            assert (await resp.json())["code"] == "csrf_failed"
    # Signing out ends the session and deletes the cookie the way a browser accepts.
    async with http.post(
        f"{staff.url}/operator/api/v1/sessions/logout", headers={**cookie, **csrf, **origin}
    ) as resp:
        assert resp.status == 200
        gone = resp.cookies[OPERATOR_COOKIE]
    assert gone.value == "" and gone["secure"] and gone["path"] == "/"
    status, _, _ = await _get(http, f"{staff.url}/operator/api/v1/me", headers=cookie)
    assert status == 401


# -- in the browser -------------------------------------------------------------------------


class Console:
    """The console as an operator uses it."""

    def __init__(self, page: Page, url: str) -> None:
        self.page = page
        self.url = url

    @classmethod
    async def open(cls, ctx: BrowserContext, url: str) -> Console:
        await ctx.add_init_script(CSP_PROBE)
        console = cls(await ctx.new_page(), url)
        await console.page.goto(f"{url}/console/")
        await console.page.select_option("#lang", "en")
        await console.ready("signin")
        return console

    async def ready(self, state: str) -> None:
        await expect(self.page.locator("body")).to_have_attribute(
            "data-ready", state, timeout=TIMEOUT_MS
        )

    async def sign_in(self, op: OperatorClient) -> None:
        await self.page.fill("#signin-username", op.username)
        await self.page.fill("#signin-password", op.password)
        await self.page.fill("#signin-otp", await op.totp.fresh_code())
        await self.page.click("#signin-submit")
        await self.ready("console")
        await expect(self.page.locator("#who")).to_contain_text(op.username)

    async def visible(self) -> set[str]:
        sections = (
            "signin",
            "setup",
            "desk",
            "revocation",
            "notices",
            "operators",
            "approvals",
            "audit",
        )
        return {s for s in sections if await self.page.locator(f"#{s}").is_visible()}

    async def csp_violations(self) -> list[str]:
        found: list[str] = await self.page.evaluate("window.__cspViolations")
        return found

    async def fetch_status(self, method: str, path: str, headers: dict[str, str]) -> int:
        """What a script on the page gets from a request it builds itself."""
        status: int = await self.page.evaluate(
            """async ([method, path, headers]) => (await fetch(path, {
                 method, headers, credentials: "same-origin"})).status""",
            [method, path, headers],
        )
        return status


async def _context(beside: BrowserContext, traffic: Traffic) -> BrowserContext:
    """Another operator's browser profile (own cookies) in the same Chromium."""
    assert beside.browser is not None
    ctx = await beside.browser.new_context(viewport={"width": 1100, "height": 900})
    ctx.on("page", traffic.attach)
    return ctx


async def _certificate_for(
    code: str, base_url: str, http: aiohttp.ClientSession
) -> tuple[str, dict[str, Any]]:
    """The citizen on their own device: activation code, consents, TOTP, a
    face check, then the key and certificate. Returns their owner id and credential."""
    client = new_client(base_url, http)
    await client.activate(code)
    await client.accept_consents()
    totp = await client.setup_totp()
    face_id = await passed_face_check(client)
    cred = await client.create_credential(PASSWORD, await totp.fresh_code(), face_id)
    assert client.owner_id
    return client.owner_id, cred


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_desk_proofing_and_a_two_person_notice_on_the_console(
    open_browser: Opener,
    traffic: Traffic,
    staff: Staff,
    base_url: str,
    http: aiohttp.ClientSession,
) -> None:
    # The desk's webcam shows the citizen, blinking.
    desk_ctx = await open_browser("obama_1.jpg", blink=True)
    desk = await Console.open(desk_ctx, staff.url)
    for lang, title in SIGN_IN_TITLES.items():
        await desk.page.select_option("#lang", lang)
        await expect(desk.page.locator("html")).to_have_attribute("lang", lang)
        await expect(desk.page.locator("#signin-h")).to_have_text(title)
        await shot(desk.page, f"console-01-signin-{lang}")
    await desk.sign_in(staff.registration)
    assert await desk.visible() == {"desk", "approvals"}
    await expect(desk.page.locator("#desk-approve")).to_be_disabled()

    await desk.page.click("#desk-capture")
    face = desk.page.locator("#desk-face-status")
    await expect(face).to_have_class(re.compile(r"\b(ok|bad)\b"), timeout=TIMEOUT_MS)
    assert "captured" in await face.inner_text(), await face.inner_text()
    identity = person()
    await desk.page.fill("#desk-iin", identity["iin"])
    await desk.page.fill("#desk-surname", identity["surname"])
    await desk.page.fill("#desk-given", identity["given_name"])
    await desk.page.fill("#desk-email", identity["email"])
    await desk.page.select_option("#desk-doc-type", "passport")
    await desk.page.fill("#desk-doc-number", f"N{secrets.randbelow(10**8):08d}")
    await desk.page.check("#desk-checked")
    await shot(desk.page, "console-02-desk-identity")
    await desk.page.click("#desk-approve")
    code_el = desk.page.locator("#desk-code")
    await expect(code_el).to_have_text(
        re.compile(r"^[A-Z2-9]{4}(-[A-Z2-9]{4}){4}$"), timeout=TIMEOUT_MS
    )
    code = await code_el.inner_text()
    await expect(desk.page.locator("#desk-uri")).to_have_text(re.compile(re.escape(code) + "$"))
    # The QR of the activation link was drawn (the vendored library loaded).
    assert await desk.page.evaluate("document.getElementById('desk-qr').width") > 100
    await expect(desk.page.locator("#desk-done .qr-wrap")).to_be_visible()
    await shot(desk.page, "console-03-desk-code")

    # Refused without the CSRF header, even with the cookie and a same-origin page.
    assert await desk.fetch_status("POST", "/operator/api/v1/desk/captures", {}) == 403
    forged = {"X-CSRF-Token": "A" * 43}
    assert await desk.fetch_status("POST", "/operator/api/v1/desk/captures", forged) == 403

    # The citizen finishes on their device and gets a certificate in their name.
    owner_id, cred = await _certificate_for(code, base_url, http)
    cert = x509.Certificate.load(pem.unarmor(cred["certificate"].encode())[2])
    assert cert.subject.native["serial_number"] == "IIN" + identity["iin"]
    assert cert.subject.native["surname"] == identity["surname"]

    # A revocation officer asks for a CA-compromise notice: it waits.
    revoker = await Console.open(await _context(desk_ctx, traffic), staff.url)
    await revoker.sign_in(staff.revocation)
    assert await revoker.visible() == {"revocation", "notices", "approvals"}
    title = f"Issuing CA key compromised {secrets.token_hex(3)}"
    await revoker.page.fill("#notice-title", title)
    await revoker.page.fill("#notice-summary", "The issuing CA key may be known to others.")
    await revoker.page.fill("#notice-measures", "Every certificate it issued is revoked.")
    await revoker.page.fill("#notice-serials", cred["certificate_serial"])
    await revoker.page.check("#notice-ca")
    await revoker.page.click("#notice-form button[type=submit]")
    waiting = revoker.page.locator("#notice-form .status")
    await expect(waiting).to_have_class(re.compile(r"\bpending\b"), timeout=TIMEOUT_MS)
    await expect(waiting).to_contain_text("Waiting for a second operator")
    approval = await waiting.get_attribute("data-approval")
    assert approval
    mine = revoker.page.locator(f"#appr-table tr[data-approval='{approval}']")
    await expect(mine).to_contain_text("another operator decides")
    await expect(mine.locator("button.approve")).to_have_count(0)
    await shot(revoker.page, "console-04-notice-pending")
    async with http.get(f"{base_url}/pki/notices.json") as resp:
        assert title not in {n["title"] for n in (await resp.json())["notices"]}

    # A security officer approves it on their console.
    officer = await Console.open(await _context(desk_ctx, traffic), staff.url)
    await officer.sign_in(staff.security)
    assert await officer.visible() == {"notices", "operators", "approvals", "audit"}
    row = officer.page.locator(f"#appr-table tr[data-approval='{approval}']")
    await expect(row).to_contain_text(title)
    await expect(row).to_contain_text(staff.revocation.username)
    await shot(officer.page, "console-05-approval")
    await row.locator("button.approve").click()
    await expect(officer.page.locator("#appr-status")).to_have_class(
        re.compile(r"\bok\b"), timeout=TIMEOUT_MS
    )
    await expect(row).to_have_count(0)
    async with http.get(f"{base_url}/pki/notices.json") as resp:
        (published,) = [n for n in (await resp.json())["notices"] if n["title"] == title]
    assert published["serials"] == [cred["certificate_serial"]]
    # The action log shows who asked and who approved.
    await officer.page.click("#audit-refresh")
    log = officer.page.locator("#audit-table tbody")
    await expect(log).to_contain_text(staff.security.username)
    await expect(log).to_contain_text(staff.revocation.username)

    # The officer adds an auditor (the setup code shows once), then disables them.
    newcomer = f"auditor.{secrets.token_hex(3)}"
    await officer.page.fill("#ops-username", newcomer)
    await officer.page.fill("#ops-display", "New Auditor")
    await officer.page.check("#ops-roles input[value=auditor]")
    await officer.page.click("#ops-form button[type=submit]")
    await expect(officer.page.locator("#ops-setup-code")).to_have_text(
        re.compile(r"^[A-Za-z0-9_-]{20}$"), timeout=TIMEOUT_MS
    )
    # ... with the link that opens the newcomer's set-up page with it filled in.
    handed = await officer.page.locator("#ops-setup-code").inner_text()
    await expect(officer.page.locator("#ops-setup-link")).to_have_text(
        f"{staff.url}/console/#/setup/{handed}"
    )
    added = officer.page.locator(f"#ops-table tr[data-username='{newcomer}']")
    await expect(added).to_contain_text("setting up")
    await added.locator("button.disable").click()
    await expect(added).to_contain_text("disabled", timeout=TIMEOUT_MS)
    await expect(added.locator("button.disable")).to_have_count(0)

    # The revocation officer revokes the certificate (an ordinary ground: at once).
    await revoker.page.fill("#rev-serial", cred["certificate_serial"])
    await revoker.page.select_option("#rev-reason", "key-compromise")
    await revoker.page.click("#rev-form button[type=submit]")
    revoked = revoker.page.locator("#rev-form .status")
    await expect(revoked).to_have_class(re.compile(r"\bok\b"), timeout=TIMEOUT_MS)
    await expect(revoked).to_contain_text(cred["certificate_serial"])

    # An auditor reads the citizen's cabinet (nothing signed yet), writes nothing.
    auditor = await Console.open(await _context(desk_ctx, traffic), staff.url)
    await auditor.sign_in(staff.auditor)
    assert await auditor.visible() == {"operators", "approvals", "audit"}
    await expect(auditor.page.locator("#ops-form")).to_be_hidden()
    await auditor.page.fill("#docs-owner", owner_id)
    await auditor.page.click("#docs-form button[type=submit]")
    await expect(auditor.page.locator("#docs-form .status")).to_have_text(
        "No signed documents.", timeout=TIMEOUT_MS
    )

    # Signing out ends the session; the cookie is gone.
    await officer.page.click("#sign-out")
    await officer.ready("signin")
    cookies = await officer.page.context.cookies()
    assert OPERATOR_COOKIE not in {c["name"] for c in cookies}

    # The CSP held on every page: no violation, no console error ...
    for console in (desk, revoker, officer, auditor):
        assert await console.csp_violations() == [], console.url
    assert not traffic.problems, traffic.problems
    # ... and it is enforced: an inline script injected into the page does not run.
    ran = await desk.page.evaluate(
        """() => { const s = document.createElement("script");
                   s.textContent = "window.__inline = 1"; document.body.append(s);
                   return window.__inline === 1; }"""
    )
    assert ran is False
    await desk.page.wait_for_function("window.__cspViolations.length > 0")
    assert (await desk.csp_violations())[0].startswith("script-src"), await desk.csp_violations()
    # The session cookie is HttpOnly and Strict; no token in web storage or on the wire.
    (session,) = [c for c in await desk_ctx.cookies() if c["name"] == OPERATOR_COOKIE]
    assert session["httpOnly"] and session["sameSite"] == "Strict" and session["secure"]
    for console in (desk, revoker):
        assert await console.page.evaluate("sessionStorage.length") == 0
        keys = await console.page.evaluate("Object.keys(localStorage)")
        assert set(keys) <= {"cloudsign.console.lang"}
    sent = leaks(traffic, {"session": session["value"].encode()})
    assert all("headers" in where for where in sent), sent  # only ever as the Cookie header
    typed = leaks(traffic, {"password": staff.registration.password.encode()})
    assert typed == [f"password in > {staff.url}/console/session body"], typed
    # Only the refusals the test asked for failed.
    assert sorted(traffic.failures) == sorted(
        [f"403 POST {staff.url}/operator/api/v1/desk/captures"] * 2
    ), traffic.failures


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_new_operator_sets_up_their_account_on_the_console(
    open_browser: Opener, traffic: Traffic, staff: Staff, http: aiohttp.ClientSession
) -> None:
    username = f"revocation.{secrets.token_hex(3)}"
    created = await staff.security.request(
        "POST",
        "/operator/api/v1/operators",
        {"username": username, "display_name": "New Revoker", "roles": ["revocation_officer"]},
    )
    code = created["setup_code"]
    ctx = await open_browser("obama_1.jpg", blink=False)
    await ctx.add_init_script(CSP_PROBE)
    console = Console(await ctx.new_page(), staff.url)
    page = console.page

    # The link the security officer hands over opens the set-up with the code
    # filled in, and takes the code out of the address bar.
    await page.goto(f"{staff.url}/console/#/setup/{code}")
    await console.ready("setup")
    await page.select_option("#lang", "en")
    await expect(page.locator("#setup-h")).to_have_text("Set up your operator account")
    await expect(page.locator("#setup-code")).to_have_value(code)
    assert page.url == f"{staff.url}/console/#/setup"
    assert await console.visible() == {"setup"}

    # The page checks the password before it sends anything.
    step1 = page.locator("#setup-form .status")
    await page.fill("#setup-password", "too short")
    await page.fill("#setup-password2", "too short")
    await page.click("#setup-submit")
    await expect(step1).to_have_text("The password must have 12 to 256 characters.")
    password = "new operator " + secrets.token_urlsafe(12)
    await page.fill("#setup-password", password)
    await page.fill("#setup-password2", password + "!")
    await page.click("#setup-submit")
    await expect(step1).to_have_text("The two passwords differ; type the same password twice.")
    assert not traffic.bodies("/operator/api/v1/setup")
    await shot(page, "console-06-setup-password")
    await page.fill("#setup-password2", password)
    await page.click("#setup-submit")

    # The seed, once: a QR code, and the key for manual entry.
    key = page.locator("#setup-secret")
    grouped = re.compile(r"^[A-Z2-7]{4}( [A-Z2-7]{1,4})+$")
    await expect(key).to_have_text(grouped, timeout=TIMEOUT_MS)
    await expect(page.locator("#setup-qr")).to_be_visible()
    assert await page.evaluate("document.getElementById('setup-qr').width") > 100
    await expect(page.locator("#setup-account")).to_contain_text(username)
    await expect(page.locator("#setup-password")).to_have_value("")
    await expect(page.locator("#setup-password2")).to_have_value("")
    kind = await page.locator("#setup-kind").inner_text()
    period = re.fullmatch(r"time-based, 6 digits, a new one every (\d+) s", kind)
    assert period, kind
    secret = (await key.inner_text()).replace(" ", "")
    device = totp_device(secret, interval=int(period[1]))
    await shot(page, "console-07-setup-totp")
    await page.fill("#setup-otp", await device.fresh_code())
    await page.click("#setup-confirm")

    # On to the sign-in, the new name filled in; nothing of the set-up is left.
    await console.ready("signin")
    await expect(page.locator("#flash")).to_have_text(
        f"Your account {username} is ready. Sign in with your password and the next code "
        "from the app."
    )
    await expect(page.locator("#signin-username")).to_have_value(username)
    await expect(page.locator("#signin-password")).to_be_focused()
    left = await page.evaluate(
        """() => ({
             inputs: [...document.querySelectorAll("#setup input")].map((i) => i.value),
             shown: ["setup-secret", "setup-account", "setup-kind"]
               .map((id) => document.getElementById(id).textContent),
             qr: document.getElementById("setup-qr").width })"""
    )
    assert left == {"inputs": ["", "", "", ""], "shown": ["", "", ""], "qr": 0}, left
    assert page.url == f"{staff.url}/console/#/"

    # The spent code is refused on the page.
    await page.click("#signin-setup")
    await console.ready("setup")
    await page.fill("#setup-code", code)
    await page.fill("#setup-password", password)
    await page.fill("#setup-password2", password)
    await page.click("#setup-submit")
    await expect(step1).to_have_text(
        "This setup code is unknown, has expired or was already used. "
        "Ask a security officer for a new one.",
        timeout=TIMEOUT_MS,
    )
    await expect(step1).to_have_class(re.compile(r"\bbad\b"))
    await expect(page.locator("#setup-totp-form")).to_be_hidden()
    await page.click("#setup-back")
    await console.ready("signin")
    await expect(page.locator("#setup-password")).to_have_value("")

    # The new operator signs in as usual and sees their role's sections.
    await expect(page.locator("#signin-username")).to_have_value(username)
    await console.sign_in(OperatorClient(staff.url, http, username, password, device))
    assert await console.visible() == {"revocation", "notices", "approvals"}

    assert await console.csp_violations() == []
    assert not traffic.problems, traffic.problems
    assert traffic.failures == [f"401 POST {staff.url}/operator/api/v1/setup"], traffic.failures
    # The password went out with the two set-up requests and the sign-in only;
    # the seed came once, in the set-up's answer; web storage holds the language.
    typed = leaks(traffic, {"password": password.encode()})
    assert sorted(typed) == sorted(
        [f"password in > {staff.url}/operator/api/v1/setup body"] * 2
        + [f"password in > {staff.url}/console/session body"]
    ), typed
    seed = leaks(traffic, {"seed": secret.encode()})
    assert seed == [f"seed in < {staff.url}/operator/api/v1/setup body"], seed
    assert await page.evaluate("sessionStorage.length") == 0
    assert set(await page.evaluate("Object.keys(localStorage)")) <= {"cloudsign.console.lang"}


# -- the page's own files ----------------------------------------------------------------------


def _dictionaries() -> dict[str, set[str]]:
    source = (CONSOLE_DIR / "js" / "i18n.js").read_text(encoding="utf-8")
    out = {}
    for lang in ("kk", "ru", "en"):
        block = source.split(f"const {lang} = {{", 1)[1].split("\n};", 1)[0]
        out[lang] = set(re.findall(r'^\s+"?([a-z0-9_.-]+)"?:', block, re.M))
    return out


def test_three_languages_have_every_string_the_console_uses() -> None:
    dicts = _dictionaries()
    assert len(dicts["en"]) > 150
    assert dicts["kk"] == dicts["en"], dicts["kk"] ^ dicts["en"]
    assert dicts["ru"] == dicts["en"], dicts["ru"] ^ dicts["en"]
    html = (CONSOLE_DIR / "index.html").read_text(encoding="utf-8")
    used = set(re.findall(r'data-i18n="([^"]+)"', html))
    used |= {p.split(":")[1] for p in re.findall(r'data-i18n-attr="([^"]+)"', html)}
    scripts = {js.name: js.read_text(encoding="utf-8") for js in (CONSOLE_DIR / "js").glob("*.js")}
    for text in scripts.values():
        used |= set(re.findall(r'\bt\("([a-z0-9_.-]+[a-z0-9_])"', text))
    # Keys the scripts build: roles, operator states, two-person actions,
    # revocation grounds (each one the server knows), document types.
    used |= {f"role.{r.value}" for r in Role}
    used |= {f"status.{s}" for s in ("setup", "active", "disabled")}
    used |= {f"act.{a}" for a in (NOTICE_CA_COMPROMISE, REVOKE_CA_COMPROMISE, REVOKE_BULK)}
    used.add("act.operator.create")
    grounds = re.findall(r'^\s+"([a-z-]+)",$', scripts["status.js"], re.M)
    assert grounds and set(grounds) <= set(GROUNDS), grounds
    used |= {f"ground.{g}" for g in grounds}
    used |= {f"doc.{d}" for d in re.findall(r'<option value="([a-z_]+)" data-i18n="doc\.', html)}
    assert used <= dicts["en"], used - dicts["en"]
