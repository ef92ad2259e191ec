"""Cross-device, both screens in Chromium: the desktop portal shows the
animated QR of a signing request, the phone's app scans it and approves.

The citizen has a TOTP code (the desktop's login factor) and a bound phone.
The phone's platform credential is made by the reference client's
authenticator and installed in the phone's Chromium virtual authenticator
(CDP `WebAuthn.addCredential`: a passkey restored onto the phone), so the
app logs in with IIN + phone + password as on any phone it was bound on.

The desktop portal (its own browser context) sends a text file as a
request; the test screenshots the QR canvas and gives that picture to the
app as a photo of the code (the app decodes it with jsQR; zxing-cpp reads the
same picture to check what it holds), the app shows the code the desktop
shows, and approves with face + password + phone. The desktop then offers
the CAdES, which `openssl cms -verify` accepts. The signing requests' clock
stands still from the screenshot to the claim, so the frame is as fresh at
the claim however slow the machine is.

SQLite only, as the other browser tests.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization
from playwright.async_api import expect

from device_client.authenticator import SoftAuthenticator
from device_client.client import CloudsignClient
from tests.app.conftest import PhoneOpener
from tests.app.phone import PASSWORD, TIMEOUT_MS, App, Phone, shot
from tests.app.test_app_scan_push import _desktop, _pem, _photo, _read_qr
from tests.clocks import SteppingClock
from tests.portal.browser import Traffic, leaks
from tests.portal.test_portal_phone import APPROVED, Desktop, citizen, request_clock  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]

NOTE = "Minutes of the board meeting, signed on the phone.\n" * 16


async def install(phone: Phone, soft: SoftAuthenticator) -> None:
    """The software authenticator's credentials, restored into the phone's
    virtual authenticator (resident: the login finds them by the RP id)."""
    for cred in soft._credentials.values():
        key = cred.key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        await phone.cdp.send(
            "WebAuthn.addCredential",
            {
                "authenticatorId": phone.authenticator_id,
                "credential": {
                    "credentialId": base64.b64encode(cred.credential_id).decode(),
                    "isResidentCredential": True,
                    "rpId": cred.rp_id,
                    "privateKey": base64.b64encode(key).decode(),
                    "userHandle": base64.b64encode(cred.user_handle).decode(),
                    "signCount": cred.sign_count,
                },
            },
        )


async def test_the_desktop_portals_qr_is_scanned_and_approved_in_the_app(
    open_phone: PhoneOpener,
    client: CloudsignClient,
    http: aiohttp.ClientSession,
    base_url: str,
    request_clock: SteppingClock,  # noqa: F811
    traffic: Traffic,
    tmp_path: Path,
) -> None:
    iin, totp, soft = await citizen(client, bind=True)
    phone = await open_phone("obama_2.jpg", service_workers="block")
    await install(phone, soft)
    app = App(phone, base_url)
    page = phone.page
    await app.open("login")
    await page.fill("#login-iin", iin)
    await page.fill("#login-password", PASSWORD)
    await page.click("#login-form button[type=submit]")
    await app.ready("inbox")

    desktop = Desktop(await (await _desktop(phone)).new_page(), base_url)
    await desktop.login(iin, totp)
    doc = tmp_path / "minutes.txt"
    doc.write_text(NOTE)
    shown = await desktop.send(doc, text="Sign the minutes, please")
    await shot(desktop.page, "40-portal-qr")

    with request_clock.frozen():
        await desktop.redrawn()
        picture = tmp_path / "portal-qr.png"
        picture.write_bytes(await desktop.page.locator("#phone-qr").screenshot())
        frame = _read_qr(picture.read_bytes())
        assert frame is not None and frame.startswith("cloudsign.")
        await app.go("scan")
        await _photo(app, picture)
        await app.ready("request")
    # The app claimed what the picture holds, and shows the desktop's code.
    assert json.loads(traffic.bodies("/api/v1/device/qr")[-1]) == {"qr": frame}
    await expect(page.locator("#req-code")).to_have_text(shown)
    await expect(page.locator("#req-text")).to_contain_text("Sign the minutes, please")
    await shot(page, "41-app-request-from-portal")

    verdict = await app.face_check("#req-face")
    assert "passed" in verdict, verdict
    await page.fill("#req-password", PASSWORD)
    await page.click("#req-approve")
    await expect(page.locator("#req-state")).to_have_text(
        "Signed. Signatures made: 1.", timeout=TIMEOUT_MS
    )

    await desktop.state(APPROVED)
    links = desktop.page.locator("#phone-downloads a")
    await expect(links).to_have_count(1)
    async with desktop.page.expect_download() as info:
        await links.first.click()
    p7s = tmp_path / "minutes.txt.p7s"
    p7s.write_bytes(Path(await (await info.value).path()).read_bytes())
    cas = tmp_path / "ca.pem"
    cas.write_bytes(await _pem(http, base_url, "root") + await _pem(http, base_url, "issuing"))
    verified = subprocess.run(
        ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(p7s),
         "-content", str(doc), "-CAfile", str(cas), "-out", "/dev/null"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    found = leaks(traffic, {"password": PASSWORD.encode()})
    assert not found, found
