"""The portal's "Sign on my phone" screen in Chromium, with the phone in Python.

A citizen enrolled through the HTTP API (TOTP) binds a phone: the
reference client's software authenticator (device_client). On the desktop
they log in to the portal in Chromium, choose a file and send the request;
the page shows the verification code and the animated QR. The test reads
the QR the way a phone camera would, from a screenshot of the canvas decoded
with zxing-cpp (never from the page's DOM or traffic), and the Python phone
claims that frame, finds the same code the desktop shows, and approves with
face + key password + device. The desktop then offers the signature: a
CAdES .p7s that `openssl cms -verify` accepts for a text file, a signed PDF
that pyHanko validates for a PDF, both in the cabinet too.

Refusals: a QR frame photographed more than the freshness window ago is
refused when claimed (the signing-request service's clock is a
SteppingClock the test moves, never a sleep), a decline on the phone shows
"declined" and no signature, a request left too long shows "expired", and
an owner with no bound phone sees why nothing was sent.

SQLite only, like the other portal browser tests: the API underneath is
tested on both databases in tests/mobile.
"""

from __future__ import annotations

import base64
import io
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import zxingcpp
from aiohttp import web
from asn1crypto import pem, x509
from PIL import Image
from playwright.async_api import BrowserContext, Page, expect
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

from cloudsign.appkeys import SIGNING_REQUESTS
from device_client import approval
from device_client.authenticator import SoftAuthenticator
from device_client.client import ApiError, CloudsignClient, TotpDevice
from mobile_api.codes import QR_MAX_AGE
from tests.clocks import SteppingClock
from tests.helpers import enrolled, passed_face_check, person
from tests.pdfs import simple_pdf
from tests.portal.browser import Traffic, leaks, shot
from tests.portal.conftest import Opener
from tests.signing.test_xades import Trust, xmlsec_verify

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]

PASSWORD = "Qazaq-eli 2026 kilt!"
TIMEOUT_MS = 30_000
APPROVED = "Approved and signed on your phone."
DECLINED = "Declined on the phone: nothing was signed."
EXPIRED = "The request expired before it was approved: nothing was signed. Start a new one."
NO_PHONE = "No phone is bound to your account: a request is approved on a bound phone only."


@pytest.fixture
def request_clock(app: web.Application) -> Iterator[SteppingClock]:
    """The signing-request service's clock, for this test a SteppingClock:
    real time until the test freezes or moves it."""
    service = app[SIGNING_REQUESTS]
    before = service.clock
    clock = SteppingClock()
    service.clock = clock
    try:
        yield clock
    finally:
        service.clock = before


async def citizen(
    client: CloudsignClient, *, bind: bool
) -> tuple[str, TotpDevice, SoftAuthenticator]:
    """Enrolled with TOTP (the portal's login factor); with `bind`, a phone
    bound afterwards with face + password + a TOTP code. (IIN, TOTP, phone.)"""
    identity = person()
    totp, _cred = await enrolled(client, PASSWORD, identity=identity)
    phone = SoftAuthenticator(origin=client.base_url)
    if bind:
        device = await client.bind_device(
            phone,
            "Pixel 7",
            face_challenge_id=await passed_face_check(client),
            password=PASSWORD,
            otp=await totp.fresh_code(),
        )
        assert device["status"] == "active"
    return identity["iin"], totp, phone


class Desktop:
    """The portal's pages on the desktop, as the citizen uses them."""

    def __init__(self, page: Page, base_url: str) -> None:
        self.page = page
        self.base = base_url

    async def ready(self, view: str) -> None:
        await expect(self.page.locator("body")).to_have_attribute(
            "data-ready", view, timeout=TIMEOUT_MS
        )

    async def login(self, iin: str, totp: TotpDevice) -> None:
        page = self.page
        await page.goto(f"{self.base}/portal/#/login")
        await page.select_option("#lang", "en")
        await self.ready("login")
        await page.fill("#login-iin", iin)
        await page.fill("#login-otp", await totp.fresh_code())
        await page.fill("#login-password", PASSWORD)
        await page.click("#login-form button[type=submit]")
        await self.ready("cabinet")

    async def go(self, view: str) -> None:
        await self.page.evaluate("v => { location.hash = '#/' + v }", view)
        await self.ready(view)

    async def send(self, *files: Path, text: str | None = None, level: str = "B") -> str:
        """Choose the files, send the request; the code the page shows."""
        page = self.page
        await self.go("phone")
        await page.set_input_files("#phone-files", [str(f) for f in files])
        await expect(page.locator("#phone-files-list tbody tr")).to_have_count(len(files))
        if text is not None:
            await page.fill("#phone-text", text)
        await page.select_option("#phone-level", level)
        await page.click("#phone-submit")
        await expect(page.locator("#phone-wait")).to_be_visible(timeout=TIMEOUT_MS)
        code = page.locator("#phone-code")
        await expect(code).to_have_text(re.compile(r"^\d{4}$"))
        return await code.inner_text()

    async def redrawn(self) -> None:
        """Two more frames drawn from now on (so one fetched after this call)."""
        drawn = await self.page.locator("#phone-qr").get_attribute("data-drawn")
        await self.page.wait_for_function(
            "n => Number(document.getElementById('phone-qr').dataset.drawn || 0) >= n",
            arg=int(drawn or 0) + 2,
            timeout=TIMEOUT_MS,
        )

    async def scan(self) -> str:
        """What a phone camera reads off the screen: the canvas's pixels only."""
        png = await self.page.locator("#phone-qr").screenshot()
        found = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)), formats=zxingcpp.QRCode)
        assert len(found) == 1, "no QR code (or more than one) in the screenshot"
        return str(found[0].text)

    async def scan_other_than(self, seen: str) -> str:
        """Screenshots until the canvas shows another frame than `seen`."""
        for _ in range(60):
            await self.redrawn()
            frame = await self.scan()
            if frame != seen:
                return frame
        raise AssertionError("the QR never changed")

    async def state(self, text: str) -> None:
        await expect(self.page.locator("#phone-state")).to_have_text(text, timeout=TIMEOUT_MS)


async def desktop_for(
    open_browser: Opener, base_url: str, iin: str, totp: TotpDevice
) -> tuple[BrowserContext, Desktop]:
    """The desktop's Chromium (no face check happens on it), logged in."""
    ctx = await open_browser("obama_2.jpg", blink=False)
    desktop = Desktop(await ctx.new_page(), base_url)
    await desktop.login(iin, totp)
    return ctx, desktop


async def _pem(http: aiohttp.ClientSession, base_url: str, which: str) -> str:
    async with http.get(f"{base_url}/pki/ca/{which}.pem") as resp:
        assert resp.status == 200
        return await resp.text()


def _elapsed(frame: str) -> int:
    return int(frame.split(".")[2])


async def _scan_and_claim(desktop: Desktop, phone: CloudsignClient, clock: SteppingClock) -> Any:
    """The phone scans the screen and claims what it read. The request's
    clock stands still meanwhile, so however slow this machine is, the
    frame is as fresh at the claim as when the page fetched it."""
    with clock.frozen():
        await desktop.redrawn()
        frame = await desktop.scan()
        return await phone.claim_qr(frame)


@pytest.mark.parametrize(
    ("name", "content", "signed_name"),
    [
        ("note.txt", "A note signed on the phone.\n" * 20, "note.txt.p7s"),
        ("contract.pdf", None, "contract-signed.pdf"),
        (
            "invoice.xml",
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<invoice number="7"><amount>42</amount></invoice>\n',
            "invoice-signed.xml",
        ),
    ],
    ids=["cades", "pades", "xades"],
)
async def test_a_request_from_the_portal_is_approved_on_the_phone(
    open_browser: Opener,
    client: CloudsignClient,
    http: aiohttp.ClientSession,
    base_url: str,
    request_clock: SteppingClock,
    traffic: Traffic,
    tmp_path: Path,
    name: str,
    content: str | None,
    signed_name: str,
) -> None:
    iin, totp, phone = await citizen(client, bind=True)
    _ctx, desktop = await desktop_for(open_browser, base_url, iin, totp)
    page = desktop.page
    doc = tmp_path / name
    doc.write_bytes(content.encode() if content else simple_pdf("Signed on the phone"))

    shown = await desktop.send(doc, text=f"Sign {name}, please")
    await shot(page, f"phone-{name}-01-qr")
    claimed = await _scan_and_claim(desktop, client, request_clock)
    request_id = claimed["request_id"]
    assert claimed["verification_code"] == shown
    assert claimed["display_text"] == f"Sign {name}, please"
    assert [d["name"] for d in claimed["documents"]] == [name]
    assert (
        claimed["documents"][0]["format"]
        == {"txt": "cades", "pdf": "pades", "xml": "xades"}[name.rsplit(".", 1)[1]]
    )
    # The phone computes the code itself from what it is shown: the same four digits.
    details = await client.request_details(request_id)
    hashes = [base64.b64decode(d["hash"]) for d in details["documents"]]
    computed = approval.verification_code(approval.commitment(request_id, "sha256", hashes))
    assert computed == shown

    approved = await client.approve(
        request_id,
        phone,
        password=PASSWORD,
        face_challenge_id=await passed_face_check(client),
        shown_code=shown,
    )
    assert approved["status"] == "approved"

    await desktop.state(APPROVED)
    await expect(page.locator("#phone-qr-wrap")).to_be_hidden()
    links = page.locator("#phone-downloads a")
    await expect(links).to_have_count(1)
    await shot(page, f"phone-{name}-02-signed")
    async with page.expect_download() as info:
        await links.first.click()
    download = await info.value
    assert download.suggested_filename == signed_name
    signature = Path(await download.path()).read_bytes()

    root_pem, issuing_pem = (
        await _pem(http, base_url, "root"),
        await _pem(http, base_url, "issuing"),
    )
    if name.endswith(".xml"):
        root_file, issuing_file = tmp_path / "root.pem", tmp_path / "issuing.pem"
        root_file.write_text(root_pem)
        issuing_file.write_text(issuing_pem)
        trust = Trust(
            root_file, issuing_file, x509.Certificate.load(pem.unarmor(root_pem.encode())[2])
        )
        code, out = await xmlsec_verify(signature, trust, tmp_path)
        assert code == 0, out  # enveloped: Debian's xmlsec1, trusting only the root
        assert b"<amount>42</amount>" in signature
    elif content is not None:
        cas = tmp_path / "ca.pem"
        cas.write_text(root_pem + issuing_pem)
        p7s = tmp_path / signed_name
        p7s.write_bytes(signature)
        verified = subprocess.run(
            ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(p7s),
             "-content", str(doc), "-CAfile", str(cas), "-out", "/dev/null"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert verified.returncode == 0, verified.stderr
        # Detached: the .p7s holds no copy of the note.
        assert content.encode() not in signature
    else:
        (embedded,) = PdfFileReader(io.BytesIO(signature)).embedded_signatures
        trust = x509.Certificate.load(pem.unarmor(root_pem.encode())[2])
        status = await async_validate_pdf_signature(
            embedded, ValidationContext(trust_roots=[trust])
        )
        assert status.intact and status.valid and status.trusted, status.pretty_print_details()

    # Nothing more is asked about a decided request.
    asked = len(traffic.bodies(f"/signing-requests/{request_id}"))
    # The cabinet has it too, with the same signature.
    await desktop.go("cabinet")
    row = page.locator("#cab-docs tbody tr", has_text=name)
    await expect(row).to_have_count(1)
    async with page.expect_download() as again:
        await row.locator("a").click()
    assert Path(await (await again.value).path()).read_bytes() == signature
    assert len(traffic.bodies(f"/signing-requests/{request_id}")) == asked

    found = leaks(traffic, {"password": PASSWORD.encode()})
    assert not found, found
    assert not traffic.problems, traffic.problems


async def test_a_stale_frame_a_decline_and_an_expiry_sign_nothing(
    open_browser: Opener,
    app: web.Application,
    client: CloudsignClient,
    base_url: str,
    request_clock: SteppingClock,
    traffic: Traffic,
    tmp_path: Path,
) -> None:
    iin, totp, _phone = await citizen(client, bind=True)
    _ctx, desktop = await desktop_for(open_browser, base_url, iin, totp)
    page = desktop.page
    doc = tmp_path / "letter.txt"
    doc.write_bytes(b"A letter nobody signs.\n")
    shown = await desktop.send(doc)
    # The page proposed a text naming the file.
    await expect(page.locator("#phone-request-text")).to_have_text("Sign: letter.txt")

    with request_clock.frozen():
        await desktop.redrawn()
        photographed = await desktop.scan()
        # Time goes on past the freshness window while the photo is carried
        # to the phone; the page meanwhile draws the frames of the new time.
        await request_clock.wait_until(request_clock.time() + QR_MAX_AGE.total_seconds() + 5)
        current = await desktop.scan_other_than(photographed)
        assert _elapsed(current) >= _elapsed(photographed) + QR_MAX_AGE.total_seconds() + 5
        with pytest.raises(ApiError) as refused:
            await client.claim_qr(photographed)
        assert refused.value.status == 404
        claimed = await client.claim_qr(current)
    assert claimed["verification_code"] == shown
    await shot(page, "phone-decline-01-qr")
    # Leaving the screen clears the QR; coming back shows the same request again.
    await desktop.go("cabinet")
    await expect(page.locator("#phone-qr")).not_to_have_attribute("data-drawn", re.compile("."))
    await desktop.go("phone")
    await desktop.redrawn()
    await expect(page.locator("#phone-code")).to_have_text(shown)
    await expect(page.locator("#phone-again")).to_be_visible()

    # The citizen declines on the phone: the desktop says so; no signature.
    await client.decline(claimed["request_id"])
    await desktop.state(DECLINED)
    await expect(page.locator("#phone-qr-wrap")).to_be_hidden()
    await expect(page.locator("#phone-result")).to_be_hidden()
    await expect(page.locator("#phone-downloads a")).to_have_count(0)
    await shot(page, "phone-decline-02-declined")
    result = await client.signing_request(claimed["request_id"])
    assert result["status"] == "declined"
    assert all("signature" not in d for d in result["documents"])

    # Another request left unanswered past its lifetime: expired, said plainly.
    await page.click("#phone-again")
    await expect(page.locator("#phone-form")).to_be_visible()
    await desktop.send(doc, text="Left to expire")
    await desktop.redrawn()
    ttl = app[SIGNING_REQUESTS].settings.request_ttl.total_seconds()
    await request_clock.wait_until(request_clock.time() + ttl + 1)
    await desktop.state(EXPIRED)
    await expect(page.locator("#phone-qr-wrap")).to_be_hidden()
    await expect(page.locator("#phone-downloads a")).to_have_count(0)
    await shot(page, "phone-expired")
    await desktop.go("cabinet")
    await expect(page.locator("#cab-nodocs")).to_be_visible()
    assert not traffic.problems, traffic.problems


async def test_an_owner_with_no_bound_phone_is_told_so(
    open_browser: Opener,
    client: CloudsignClient,
    base_url: str,
    traffic: Traffic,
    tmp_path: Path,
) -> None:
    iin, totp, _phone = await citizen(client, bind=False)
    _ctx, desktop = await desktop_for(open_browser, base_url, iin, totp)
    page = desktop.page
    doc = tmp_path / "memo.txt"
    doc.write_bytes(b"A memo.\n")
    await desktop.go("phone")
    await page.set_input_files("#phone-files", [str(doc)])
    await page.click("#phone-submit")
    status = page.locator("#phone-form .status")
    await expect(status).to_have_text(NO_PHONE, timeout=TIMEOUT_MS)
    await expect(page.locator("#phone-nophone")).to_be_visible()
    await expect(page.locator("#phone-nophone a")).to_have_attribute("href", "/app/")
    await expect(page.locator("#phone-wait")).to_be_hidden()
    await shot(page, "phone-no-phone")
    assert any("409 POST" in f and "/api/v1/signing-requests" in f for f in traffic.failures)
    assert not traffic.problems, traffic.problems
