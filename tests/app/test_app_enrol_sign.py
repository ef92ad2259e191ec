"""The citizen's phone, from the registration desk on: the desk proofs the
citizen and hands out an activation code; in the app (a Pixel 7's Chromium,
its platform authenticator virtual), the citizen redeems the code, consents,
passes a face check, binds the phone, chooses a key password and passes a
second face check, and gets a key with the phone as the possession factor
(no TOTP code at all). Then a PDF picked with the file chooser is signed in
PAdES (face, password, the phone's assertion) and the downloaded PDF
validates with pyHanko, and a text file gets a detached CAdES signature
that openssl verifies (only its hash left the phone). The citizen logs out
and in again with the IIN, the phone and the password. No password or K_pw goes over the wire in any
encoding.

SQLite only: the flow is long, and the API calls it makes run on both
databases in the service tests (tests/mobile).
"""

from __future__ import annotations

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
from playwright.async_api import expect
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

from device_client.client import ApiError, CloudsignClient
from device_client.device import Argon2Params, derive_password_key
from tests.app.conftest import PhoneOpener
from tests.app.phone import PASSWORD, TIMEOUT_MS, App, shot
from tests.pdfs import simple_pdf
from tests.portal.browser import Traffic, leaks
from tests.portal.conftest import Proofer

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]


async def _root(http: aiohttp.ClientSession, base_url: str) -> x509.Certificate:
    async with http.get(f"{base_url}/pki/ca/root.pem") as resp:
        assert resp.status == 200
        return x509.Certificate.load(pem.unarmor(await resp.read())[2])


def _kpw(traffic: Traffic) -> bytes:
    (params,) = set(traffic.bodies("/api/v1/me/key-params", "<"))
    return derive_password_key(PASSWORD, Argon2Params.from_json(json.loads(params)))


async def test_enrol_with_the_phone_and_sign_a_pdf_picked_on_it(
    open_phone: PhoneOpener,
    proof: Proofer,
    base_url: str,
    http: aiohttp.ClientSession,
    traffic: Traffic,
    tmp_path: Path,
) -> None:
    identity, code = await proof(face="obama_1.jpg")
    phone = await open_phone("obama_2.jpg")
    app = App(phone, base_url)
    page = phone.page
    serial = await app.enrol(code)
    assert re.fullmatch(r"[0-9A-Fa-f:]+", serial), serial

    # The phone's authenticator holds one key for the relying party "localhost";
    # the service knows the phone by name, and the account has no TOTP.
    (credential,) = await phone.credentials()
    assert credential["rpId"] == "localhost" and credential["isResidentCredential"]
    session = CloudsignClient(base_url, http, access_token=await app.token())
    (device,) = await session.devices()
    assert device["name"] == "Pixel 7" and device["status"] == "active"
    me = await session.request("GET", "/api/v1/me")
    assert me["session"] == "full" and not me["totp_confirmed"]
    assert sorted(c["kind"] for c in me["consents"]) == ["cloud_key_storage", "personal_data"]
    await expect(page.locator(".tabs")).to_be_visible()

    # A PDF from the phone's files: PAdES, with face, password and the phone.
    pdf = tmp_path / "agreement.pdf"
    content = simple_pdf("Signed on the phone")
    pdf.write_bytes(content)
    await app.go("sign")
    async with page.expect_file_chooser() as chooser:
        await page.click("#sign-file")
    await (await chooser.value).set_files(str(pdf))
    await expect(page.locator("#sign-hash")).to_have_text(hashlib.sha256(content).hexdigest())
    await expect(page.locator("#sign-format")).to_have_attribute("data-format", "pades")
    verdict = await app.face_check("#sign-face")
    assert "passed" in verdict, verdict
    await page.fill("#sign-password", PASSWORD)
    await shot(page, "06-sign-pdf")
    before = (await phone.credentials())[0]["signCount"]
    async with page.expect_download(timeout=TIMEOUT_MS) as info:
        await page.click("#sign-submit")
    download = await info.value
    assert download.suggested_filename == "agreement-signed.pdf"
    signed = Path(await download.path()).read_bytes()
    await expect(page.locator("#sign-form > .status")).to_have_class(re.compile(r"\bok\b"))
    await shot(page, "07-sign-done")
    # The phone signed once more: the authorisation's assertion.
    assert (await phone.credentials())[0]["signCount"] == before + 1
    (embedded,) = PdfFileReader(io.BytesIO(signed)).embedded_signatures
    status = await async_validate_pdf_signature(
        embedded, ValidationContext(trust_roots=[await _root(http, base_url)])
    )
    assert status.intact and status.valid and status.trusted, status.pretty_print_details()

    # Any other file: a detached CAdES signature, and only its hash leaves the phone.
    note = tmp_path / "note.txt"
    text = b"Receipt No. 12: received in full.\n" * 30
    note.write_bytes(text)
    async with page.expect_file_chooser() as chooser:
        await page.click("#sign-file")
    await (await chooser.value).set_files(str(note))
    await expect(page.locator("#sign-format")).to_have_attribute("data-format", "cades")
    verdict = await app.face_check("#sign-face")
    assert "passed" in verdict, verdict
    await page.fill("#sign-password", PASSWORD)
    async with page.expect_download(timeout=TIMEOUT_MS) as info:
        await page.click("#sign-submit")
    download = await info.value
    assert download.suggested_filename == "note.txt.p7s"
    p7s = tmp_path / "note.txt.p7s"
    p7s.write_bytes(Path(await download.path()).read_bytes())
    for which in ("root", "issuing"):
        async with http.get(f"{base_url}/pki/ca/{which}.pem") as resp:
            (tmp_path / f"{which}.pem").write_bytes(await resp.read())
    verified = subprocess.run(
        ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(p7s),
         "-content", str(note), "-CAfile", str(tmp_path / "root.pem"),
         "-certfile", str(tmp_path / "issuing.pem"), "-out", "/dev/null"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    assert not any(text in body for body in traffic.bodies("/sign-document"))
    assert sorted(d["name"] for d in await session.documents()) == ["agreement.pdf", "note.txt"]

    # Log out; log in again on the phone: IIN, the phone, the password.
    await page.click("#logout")
    await app.ready("home")
    assert await page.evaluate("sessionStorage.length") == 0
    # The token is dead on the server too.
    with pytest.raises(ApiError) as refused:
        await session.request("GET", "/api/v1/me")
    assert refused.value.status == 401
    await app.go("login")
    await page.fill("#login-iin", identity["iin"])
    await page.fill("#login-password", PASSWORD)
    await shot(page, "08-login")
    await page.click("#login-form button[type=submit]")
    await app.ready("inbox")
    await expect(page.locator("#inbox-empty")).to_be_visible()
    token = await app.token()
    assert token != session.access_token
    relogged = CloudsignClient(base_url, http, access_token=token)
    assert (await relogged.request("GET", "/api/v1/me"))["owner_id"] == me["owner_id"]

    # Nothing secret went over the wire, in any encoding; nothing was refused.
    found = leaks(traffic, {"password": PASSWORD.encode(), "K_pw": _kpw(traffic)})
    assert not found, found
    assert not traffic.problems, traffic.problems
    assert not traffic.failures, traffic.failures
    stored: dict[str, Any] = await page.evaluate("({...localStorage})")
    assert PASSWORD not in json.dumps(stored) and token not in json.dumps(stored)
