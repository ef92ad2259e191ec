"""Signing requests approved on the phone. The requesting screen is played
from Python with the app's own session token (the phone's key never leaves
Chromium's authenticator, so no Python client could log in with it): it
creates requests over `/api/v1/signing-requests`; the app finds each in its
inbox, fetches and hashes every document sent whole, shows the
verification code it computes itself (the one the service returned), and
approves with a face check, the key password and the phone.

The app refuses what it cannot check: a document whose bytes are not the
hash the request commits to, a code that is not the one the hashes give,
and an approval challenge that is not the one it computes from the
commitment, the code and the service's nonce (the phone is then never
asked to sign). A declined request signs nothing; a
revoked phone ends the pending requests and signs no more.

SQLite only, as the portal's browser tests. The phone's context blocks the
service worker, so that Playwright's routing sees every request (the worker
is tested in test_app_shell).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from asn1crypto import pem, x509
from playwright.async_api import Route, expect
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

from device_client.authenticator import b64url, unb64url
from device_client.client import ApiError, CloudsignClient
from tests.app.conftest import PhoneOpener
from tests.app.phone import PASSWORD, TIMEOUT_MS, App, shot
from tests.pdfs import simple_pdf
from tests.portal.browser import Traffic, leaks
from tests.portal.conftest import Proofer

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]

NOTE = b"Annex 1: the parties agree on the schedule.\n" * 20


async def _pem(http: aiohttp.ClientSession, base_url: str, which: str) -> bytes:
    async with http.get(f"{base_url}/pki/ca/{which}.pem") as resp:
        assert resp.status == 200
        return await resp.read()


async def _open_request(app: App, request_id: str) -> None:
    """From the inbox to the request's screen, once the app has checked it."""
    await app.go("inbox")
    item = app.page.locator(f".request-item[data-request='{request_id}']")
    await expect(item).to_be_visible(timeout=TIMEOUT_MS)
    await item.click()
    await app.ready("request")


def _approvals(traffic: Traffic, request_id: str) -> list[str]:
    return [n for n, _ in traffic.items if n.startswith("> POST") and f"{request_id}/approval" in n]


#: Dark, opaque pixels of a canvas: text drawn on a white page.
INKED_PIXELS = """c => {
  const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4) if (d[i] < 100 && d[i + 3] > 200) n++;
  return n;
}"""


async def test_a_request_from_another_screen_is_approved_on_the_phone(
    open_phone: PhoneOpener,
    proof: Proofer,
    base_url: str,
    http: aiohttp.ClientSession,
    traffic: Traffic,
    tmp_path: Path,
) -> None:
    _, code = await proof(face="obama_1.jpg")
    phone = await open_phone("obama_2.jpg", service_workers="block")
    app = App(phone, base_url)
    page = phone.page
    await app.enrol(code)
    screen = CloudsignClient(base_url, http, access_token=await app.token())

    pdf = simple_pdf("Contract 7")
    raw = hashlib.sha256(b"a hash signed raw").digest()
    created = await screen.create_signing_request(
        [
            {"name": "contract.pdf", "format": "pades", "content": pdf},
            {"name": "annex.txt", "format": "cades", "content": NOTE},
            {"name": "digest", "format": "raw", "hash": raw},
        ],
        "Sign the contract No. 7 and its annex",
    )
    request_id = created["request_id"]

    # The inbox lists it; its screen shows what the service committed to.
    await app.go("inbox")
    await expect(page.locator(f".request-item[data-request='{request_id}']")).to_be_visible()
    await shot(page, "10-inbox")
    await _open_request(app, request_id)
    await expect(page.locator("#req-code")).to_have_text(created["verification_code"])
    await expect(page.locator("#req-text")).to_have_text("Sign the contract No. 7 and its annex")
    docs = page.locator("#req-docs li")
    await expect(docs).to_have_count(3)
    await expect(docs.nth(0)).to_have_class(re.compile(r"\bok\b"))
    await expect(docs.nth(1)).to_have_class(re.compile(r"\bok\b"))
    await expect(docs.nth(2)).to_have_class(re.compile(r"\bhash-only\b"))
    await expect(docs.nth(0).locator(".hash")).to_have_text(hashlib.sha256(pdf).hexdigest())
    # What is signed, drawn on the phone from the checked bytes: the PDF's
    # page by pdf.js (ink where the text is), the annex as its text.
    page_view = docs.nth(0).locator("canvas.page")
    await expect(page_view).to_have_count(1)
    await expect(page_view).to_have_attribute("aria-label", "Page 1 of 1")
    inked = await page_view.evaluate(INKED_PIXELS)
    assert inked > 100, inked
    await expect(docs.nth(1).locator(".text-preview")).to_have_text(NOTE.decode())
    await expect(docs.nth(2).locator("canvas, .text-preview")).to_have_count(0)
    await expect(page.locator("#req-refused")).to_be_hidden()
    await expect(page.locator("#req-approve")).to_be_enabled()

    # Approve: face, password, the phone's assertion over the checked challenge.
    verdict = await app.face_check("#req-face")
    assert "passed" in verdict, verdict
    await page.fill("#req-password", PASSWORD)
    await shot(page, "11-request")
    before = (await phone.credentials())[0]["signCount"]
    await page.click("#req-approve")
    state = page.locator("#req-state")
    await expect(state).to_have_text("Signed. Signatures made: 3.", timeout=TIMEOUT_MS)
    await expect(page.locator("#approve-form")).to_be_hidden()
    await shot(page, "12-request-approved")
    assert (await phone.credentials())[0]["signCount"] == before + 1
    (approval,) = [json.loads(b) for b in traffic.bodies(f"{request_id}/approval")]
    assert approval["verification_code"] == created["verification_code"]

    # The requesting screen gets the signatures: PAdES, CAdES and raw.
    result = await screen.signing_request(request_id)
    assert result["status"] == "approved"
    signed_pdf, cms, raw_sig = (base64.b64decode(d["signature"]) for d in result["documents"])
    root = x509.Certificate.load(pem.unarmor(await _pem(http, base_url, "root"))[2])
    (embedded,) = PdfFileReader(io.BytesIO(signed_pdf)).embedded_signatures
    status = await async_validate_pdf_signature(embedded, ValidationContext(trust_roots=[root]))
    assert status.intact and status.valid and status.trusted, status.pretty_print_details()
    (tmp_path / "root.pem").write_bytes(await _pem(http, base_url, "root"))
    (tmp_path / "issuing.pem").write_bytes(await _pem(http, base_url, "issuing"))
    (tmp_path / "annex.txt").write_bytes(NOTE)
    (tmp_path / "annex.p7s").write_bytes(cms)
    verified = subprocess.run(
        ["openssl", "cms", "-verify", "-binary", "-inform", "DER",
         "-in", str(tmp_path / "annex.p7s"), "-content", str(tmp_path / "annex.txt"),
         "-CAfile", str(tmp_path / "root.pem"), "-certfile", str(tmp_path / "issuing.pem"),
         "-out", "/dev/null"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    assert raw_sig
    await app.go("inbox")
    await expect(page.locator("#inbox-empty")).to_be_visible()

    found = leaks(traffic, {"password": PASSWORD.encode()})
    assert not found, found
    assert not traffic.problems, traffic.problems
    assert not traffic.failures, traffic.failures


async def test_the_phone_refuses_what_it_cannot_check_and_a_revoked_phone_signs_nothing(
    open_phone: PhoneOpener,
    proof: Proofer,
    base_url: str,
    http: aiohttp.ClientSession,
    traffic: Traffic,
) -> None:
    _, code = await proof(face="obama_1.jpg")
    phone = await open_phone("obama_2.jpg", service_workers="block")
    app = App(phone, base_url)
    page = phone.page
    await app.enrol(code)
    screen = CloudsignClient(base_url, http, access_token=await app.token())

    async def new_request(text: str) -> dict[str, Any]:
        return await screen.create_signing_request(
            [{"name": "order.pdf", "format": "pades", "content": simple_pdf(text)}], text
        )

    # A document whose bytes are not what the request commits to: refused.
    swapped = await new_request("Order No. 1")
    swapped_id = swapped["request_id"]

    async def other_bytes(route: Route) -> None:
        await route.fulfill(status=200, body=simple_pdf("Order No. 666"))

    await page.route(f"**/device/requests/{swapped_id}/documents/0", other_bytes)
    await _open_request(app, swapped_id)
    await expect(page.locator("#req-docs li").first).to_have_class(re.compile(r"\bbad\b"))
    await expect(page.locator("#req-refused")).to_be_visible()
    await expect(page.locator("#req-approve")).to_be_disabled()
    await shot(page, "13-request-refused-document")
    await page.unroute(f"**/device/requests/{swapped_id}/documents/0")

    # A service that says another code than the one the hashes give: the
    # phone shows its own, and warns.
    async def other_code(route: Route) -> None:
        response = await route.fetch()
        body = await response.json()
        body["verification_code"] = f"{(int(body['verification_code']) + 1) % 10000:04d}"
        await route.fulfill(response=response, json=body)

    await page.route(f"**/device/requests/{swapped_id}", other_code)
    await _open_request(app, swapped_id)
    await expect(page.locator("#req-code")).to_have_text(swapped["verification_code"])
    await expect(page.locator("#req-refused")).to_contain_text(
        "The code the service sent is not the one this phone computes"
    )
    await expect(page.locator("#req-approve")).to_be_disabled()
    await page.unroute(f"**/device/requests/{swapped_id}")

    # The service's challenge for another nonce than the one it sent: the
    # phone is not asked to sign, and nothing is approved.
    await _open_request(app, swapped_id)
    await expect(page.locator("#req-approve")).to_be_enabled()
    await expect(page.locator("#req-code")).to_have_text(swapped["verification_code"])

    async def other_nonce(route: Route) -> None:
        response = await route.fetch()
        body = await response.json()
        body["nonce"] = b64url(bytes(b ^ 1 for b in unb64url(body["nonce"])))
        await route.fulfill(response=response, json=body)

    await page.route(f"**/device/requests/{swapped_id}/challenge", other_nonce)
    verdict = await app.face_check("#req-face")
    assert "passed" in verdict, verdict
    await page.fill("#req-password", PASSWORD)
    before = (await phone.credentials())[0]["signCount"]
    await page.click("#req-approve")
    status = page.locator("#approve-form > .status")
    await expect(status).to_contain_text(
        "The service asked this phone to confirm something other than what is shown.",
        timeout=TIMEOUT_MS,
    )
    await expect(status).to_have_class(re.compile(r"\bbad\b"))
    await shot(page, "14-request-refused-challenge")
    assert (await phone.credentials())[0]["signCount"] == before
    assert not _approvals(traffic, swapped_id)
    await page.unroute(f"**/device/requests/{swapped_id}/challenge")
    assert (await screen.signing_request(swapped_id))["status"] == "pending"

    # Declined on the phone: nothing signed.
    await page.click("#req-decline")
    await expect(page.locator("#req-state")).to_have_text("Declined. Nothing was signed.")
    declined = await screen.signing_request(swapped_id)
    assert declined["status"] == "declined"
    assert all("signature" not in d for d in declined["documents"])

    # The phone is lost: revoked with face and password (no phone needed);
    # the request waiting for it ends, and the phone confirms nothing more.
    pending = await new_request("Order No. 2")
    await app.go("devices")
    devices = page.locator("#dev-list li")
    await expect(devices).to_have_count(1)
    await expect(devices.first).to_contain_text("this phone")
    await devices.first.locator("button.revoke").click()
    await expect(page.locator("#revoke-form")).to_be_visible()
    verdict = await app.face_check("#rev-face")
    assert "passed" in verdict, verdict
    await page.fill("#rev-password", PASSWORD)
    await page.click("#rev-submit")
    await expect(page.locator("#dev-status")).to_have_text(
        "This phone is revoked: it can no longer confirm logins or signatures.",
        timeout=TIMEOUT_MS,
    )
    await expect(devices.first).to_contain_text("revoked")
    await expect(devices.first.locator("button.revoke")).to_have_count(0)
    await shot(page, "15-devices-revoked")
    assert (await screen.signing_request(pending["request_id"]))["status"] == "failed"
    (device,) = await screen.devices()
    assert device["status"] == "revoked"
    with pytest.raises(ApiError) as refused:
        await new_request("Order No. 3")
    assert refused.value.status == 409

    found = leaks(traffic, {"password": PASSWORD.encode()})
    assert not found, found
    assert not traffic.problems, traffic.problems
