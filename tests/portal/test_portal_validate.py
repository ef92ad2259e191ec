"""The portal's "Check a signature" page in a real browser: signatures this
service made are reported TOTAL-PASSED with their signer and chain, a CAdES
is checked from its document or from a fingerprint computed in the browser
(the document itself then never leaves it), a changed PDF fails on the hash,
the report prints without the form, and the server's PDF report of it
downloads with the same verdict and signer."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re

import pytest
from asn1crypto import pem, x509
from playwright.async_api import expect

from device_client.client import CloudsignClient
from tests.helpers import enrolled, passed_face_check
from tests.pdfs import simple_pdf
from tests.portal.browser import Traffic, shot
from tests.portal.conftest import Opener
from tests.validation.test_validation_report_pdf import pdf_text

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]

PASSWORD = "correct horse battery"
#: A report can wait for the validation workers to spawn (at first use in tests).
REPORT_MS = 90_000


async def test_a_citizen_checks_signatures_on_the_portal(
    client: CloudsignClient, base_url: str, open_browser: Opener, traffic: Traffic
) -> None:
    totp, cred = await enrolled(client)
    subject = x509.Certificate.load(pem.unarmor(cred["certificate"].encode())[2]).subject
    pdf = simple_pdf("checked in the browser")
    content = os.urandom(3000)
    hashes = [hashlib.sha256(pdf).digest(), hashlib.sha256(content).digest()]
    face = await passed_face_check(client)
    sad = await client.authorize(
        cred["credential_id"],
        hashes,
        password=PASSWORD,
        otp=await totp.fresh_code(),
        face_challenge_id=face,
    )
    credential = cred["credential_id"]
    _id, signed_pdf = await client.sign_document(
        credential, sad, document=pdf, signature_format="pades", name="c.pdf", level="T"
    )
    _id, p7s = await client.sign_document(credential, sad, document_hash=hashes[1], level="T")

    ctx = await open_browser("obama_1.jpg", blink=False)
    page = await ctx.new_page()
    await page.goto(f"{base_url}/portal/#/validate")
    await page.select_option("#lang", "en")
    await expect(page.locator("body")).to_have_attribute("data-ready", "validate")
    report = page.locator("#val-report")
    status = page.locator("#val-form .status")

    # Nothing chosen: the form says so and sends nothing.
    await page.click("#val-form button[type=submit]")
    await expect(status).to_have_class(re.compile(r"\bbad\b"))

    await page.set_input_files(
        "#val-file", files=[{"name": "c.pdf", "mimeType": "application/pdf", "buffer": signed_pdf}]
    )
    await page.click("#val-form button[type=submit]")
    headline = report.locator("h2 .indication")
    await expect(headline).to_have_text("TOTAL-PASSED", timeout=REPORT_MS)
    await expect(headline).to_have_class(re.compile(r"\bok\b"))
    card = report.locator(".signature-report")
    await expect(card).to_have_count(1)
    await expect(card).to_contain_text(subject.human_friendly)
    await expect(card).to_contain_text("B-T")
    await expect(card.locator(".chain li")).to_have_count(3)
    await shot(page, "21-validate-pades")

    # Printed (or saved as PDF), the report stands alone.
    await page.emulate_media(media="print")
    await expect(page.locator("#val-form")).to_be_hidden()
    await expect(headline).to_be_visible()
    assert (await page.pdf()).startswith(b"%PDF-")
    await page.emulate_media(media="screen")

    # The server's PDF report of the same file: its verdict, signer and fingerprint.
    pdf_button = report.locator("#val-pdf")
    await expect(pdf_button).to_have_text("Download the PDF report")
    async with page.expect_download(timeout=REPORT_MS) as download_info:
        await pdf_button.click()
    download = await download_info.value
    assert download.suggested_filename == "validation-report.pdf"
    saved = await download.path()
    assert saved is not None
    downloaded = saved.read_bytes()
    assert downloaded.startswith(b"%PDF-")
    text = "".join(pdf_text(downloaded).split())
    assert "TOTAL-PASSED" in text and "B-T" in text
    assert "".join(subject.human_friendly.split()) in text
    assert hashlib.sha256(signed_pdf).hexdigest() in text
    # In Russian, the button says so.
    await page.select_option("#lang", "ru")
    await page.click("#val-form button[type=submit]")
    await expect(pdf_button).to_have_text("Скачать отчёт в PDF", timeout=REPORT_MS)
    await page.select_option("#lang", "en")

    # A CAdES with only the document's fingerprint: computed here, the
    # document itself is not sent.
    traffic.items.clear()
    await page.set_input_files(
        "#val-file",
        files=[{"name": "d.p7s", "mimeType": "application/pkcs7-signature", "buffer": p7s}],
    )
    await page.set_input_files(
        "#val-content",
        files=[{"name": "d.bin", "mimeType": "application/octet-stream", "buffer": content}],
    )
    await page.check("#val-hash-only")
    await page.click("#val-form button[type=submit]")
    await expect(headline).to_have_text("TOTAL-PASSED", timeout=REPORT_MS)
    (sent,) = [
        json.loads(b)
        for name, b in traffic.items
        if name.startswith("> ") and name.endswith("/api/v1/validate body")
    ]
    assert set(sent) == {"signature", "content_sha256"}
    assert base64.b64decode(sent["content_sha256"]) == hashes[1]
    # And with the document itself.
    await page.uncheck("#val-hash-only")
    await page.click("#val-form button[type=submit]")
    await expect(headline).to_have_text("TOTAL-PASSED", timeout=REPORT_MS)

    # One byte of the signed PDF changed inside the signed range: failed, on the hash.
    at = signed_pdf.index(b"checked in the browser")
    tampered = signed_pdf[:at] + b"C" + signed_pdf[at + 1 :]
    await page.set_input_files("#val-content", files=[])
    await page.set_input_files(
        "#val-file", files=[{"name": "t.pdf", "mimeType": "application/pdf", "buffer": tampered}]
    )
    await page.click("#val-form button[type=submit]")
    await expect(headline).to_have_text("TOTAL-FAILED · HASH_FAILURE", timeout=REPORT_MS)
    await expect(headline).to_have_class(re.compile(r"\bbad\b"))
    await shot(page, "22-validate-tampered")
    assert not traffic.problems, traffic.problems
