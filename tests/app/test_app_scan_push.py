"""A signature started on another organisation's page, found by the phone's
camera; and a request pushed to the phone through Web Push.

The QR: a relying party (registered by a security officer) creates a
request; its page, a small aiohttp server of the test's on loopback opened
in a desktop browser context, shows the animated QR (the frame fetched by
the page's backend with the relying party's credentials, drawn as a PNG
with segno) and the verification code. The test takes a screenshot of the
QR and reads it with zxing-cpp (never the DOM) to check it is the current
frame; the phone gets the same picture, as a photo of the code through the
app's file input, and as the live camera (Chromium's fake camera playing a
clip made from the screenshot). The app decodes it itself (jsQR), claims
it, and shows the code the page shows; approved with face + password +
phone, the relying party receives a CAdES that `openssl cms -verify`
accepts. The signing requests' clock stands still while a frame must stay
fresh (however slow the machine) and jumps past the freshness window for
the stale frame the app must refuse.

The push: the test plays the push service on loopback. The bound device's
subscription (the test's endpoint, and keys the test made, since Chromium's
own push service is out of reach offline) is registered through the app's
PUT route; the service's Web Push POST is checked (its VAPID JWT, aud the
endpoint's origin) and decrypted (RFC 8291), and its payload delivered to
the app's service worker over the DevTools protocol, which shows a
notification and tells the open app, which says so and refreshes its inbox.

SQLite only, as the portal's browser tests.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import re
import secrets
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import http_ece
import numpy as np
import pytest
import segno
import zxingcpp
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from multidict import CIMultiDict
from PIL import Image
from playwright.async_api import BrowserContext, Page, expect

from cloudsign.appkeys import SIGNING_REQUESTS
from device_client.client import CloudsignClient
from mobile_api import codes
from tests.app.conftest import PhoneOpener
from tests.app.phone import PASSWORD, TIMEOUT_MS, App, Phone, shot
from tests.clocks import SteppingClock
from tests.egov_service import running_service
from tests.mobile.test_push import _verify_vapid, b64url, push_endpoint  # noqa: F401
from tests.mobile.test_relying_parties import RelyingPartyClient
from tests.portal.browser import FFMPEG, HEIGHT, WIDTH, Traffic, leaks
from tests.portal.conftest import Proofer
from tests.staff import Staff

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]

NOTE = b"Application No. 42: a building permit for a barn.\n" * 12
#: Past the freshness window of a frame (codes.QR_MAX_AGE), with a margin.
STALE_STEP = codes.QR_MAX_AGE.total_seconds() + 5

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>eGov services: sign</title></head>
<body data-request="{request_id}">
<h1>Sign your application</h1>
<p>Scan this code with the cloudsign app.</p>
<img id="qr" alt="QR code to scan">
<p>Code on your phone: <strong id="code"></strong></p>
<p>Status: <span id="status"></span></p>
<script src="/page.js"></script>
</body></html>
"""

# The page's own script: every second the current frame, as the service says.
SCRIPT = """
const id = document.body.dataset.request;
const img = document.getElementById("qr");
let shown = null;
async function refresh() {
  const state = await (await fetch(`/r/${id}/state`)).json();
  document.getElementById("code").textContent = state.verification_code;
  document.getElementById("status").textContent = state.status;
  if (state.status !== "pending") { img.hidden = true; return; }
  const resp = await fetch(`/r/${id}/qr.png`, { cache: "no-store" });
  if (!resp.ok) return;
  const url = URL.createObjectURL(await resp.blob());
  const next = new Image();
  next.src = url;
  await next.decode();
  img.src = url;  // swapped only once drawn whole
  if (shown) URL.revokeObjectURL(shown);
  shown = url;
  img.dataset.frames = String(Number(img.dataset.frames || 0) + 1);
}
refresh();
setInterval(refresh, 1000);
"""


class RelyingPartyPage:
    """Another organisation's web page for its signing requests."""

    def __init__(self, rp: RelyingPartyClient) -> None:
        self.rp = rp
        self.app = web.Application()
        self.app.router.add_get("/page.js", self.script)
        self.app.router.add_get("/r/{id}", self.page)
        self.app.router.add_get("/r/{id}/state", self.state)
        self.app.router.add_get("/r/{id}/qr.png", self.qr)

    async def script(self, request: web.Request) -> web.Response:
        return web.Response(text=SCRIPT, content_type="text/javascript")

    async def page(self, request: web.Request) -> web.Response:
        html = PAGE.format(request_id=request.match_info["id"])
        return web.Response(text=html, content_type="text/html")

    async def state(self, request: web.Request) -> web.Response:
        status, body = await self.rp.call(
            "GET", f"/api/v1/rp/signing-requests/{request.match_info['id']}"
        )
        assert status == 200, body
        return web.json_response(
            {"status": body["status"], "verification_code": body["verification_code"]}
        )

    async def qr(self, request: web.Request) -> web.Response:
        status, body = await self.rp.call(
            "GET", f"/api/v1/rp/signing-requests/{request.match_info['id']}/qr"
        )
        if status != 200:
            return web.Response(status=409)
        out = io.BytesIO()
        segno.make(body["qr"], error="m").save(out, kind="png", scale=6, border=4)
        return web.Response(body=out.getvalue(), content_type="image/png")


@pytest.fixture
async def relying_party(
    staff: Staff, base_url: str, http: aiohttp.ClientSession
) -> AsyncIterator[tuple[RelyingPartyClient, str]]:
    """A relying party registered by a security officer, and its page's base URL."""
    party = await staff.security.request(
        "POST", "/operator/api/v1/relying-parties", {"name": "eGov services"}
    )
    rp = RelyingPartyClient(base_url, http, party)
    server = TestServer(RelyingPartyPage(rp).app, host="127.0.0.1")
    await server.start_server()
    yield rp, str(server.make_url("")).rstrip("/")
    await server.close()


@pytest.fixture
def request_clock(app: web.Application, monkeypatch: pytest.MonkeyPatch) -> SteppingClock:
    """The signing requests' clock, one the test can stop and move on."""
    clock = SteppingClock()
    monkeypatch.setattr(app[SIGNING_REQUESTS], "clock", clock)
    return clock


def _read_qr(png: bytes) -> str | None:
    """The text of the QR in a picture, read by zxing-cpp."""
    with Image.open(io.BytesIO(png)) as im:
        found = zxingcpp.read_barcodes(im.convert("L"))
    texts = [b.text for b in found if b.format == zxingcpp.BarcodeFormat.QRCode]
    return texts[0] if len(texts) == 1 else None


async def _current_qr(page: Page, rp: RelyingPartyClient, request_id: str) -> bytes:
    """A screenshot of the page's QR once it shows the current frame (read
    from the picture, compared with what the service says now)."""
    now = ""
    for _ in range(TIMEOUT_MS // 250):
        status, body = await rp.call("GET", f"/api/v1/rp/signing-requests/{request_id}/qr")
        assert status == 200, body
        now = body["qr"]
        if await page.locator("#qr").evaluate("img => img.complete && img.naturalWidth > 0"):
            png = await page.locator("#qr").screenshot()
            if _read_qr(png) == now:
                return png
        await asyncio.sleep(0.25)
    raise AssertionError(f"the page never showed the frame {now}")


def _qr_clip(path: Path, png: bytes, seconds: float = 2.0) -> None:
    """A y4m clip for the fake camera: the QR screenshot in the middle of a
    white picture, with a little sensor noise."""
    with Image.open(io.BytesIO(png)) as im:
        qr = im.convert("RGB")
    side = round(HEIGHT * 0.8)
    qr = qr.resize((side, side), Image.NEAREST)
    canvas = Image.new("RGB", (WIDTH, HEIGHT), (235, 235, 235))
    canvas.paste(qr, ((WIDTH - side) // 2, (HEIGHT - side) // 2))
    base = np.asarray(canvas, dtype=np.int16)
    rng = np.random.default_rng(7)
    frames = bytearray()
    for _ in range(round(seconds * 10)):
        frames += np.clip(base + rng.integers(-3, 4, base.shape), 0, 255).astype(np.uint8).tobytes()
    tmp = path.with_name(f"{path.stem}.qr.y4m")
    subprocess.run(
        [
            str(FFMPEG),
            "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{WIDTH}x{HEIGHT}", "-r", "10",
            "-i", "-",
            "-pix_fmt", "yuv420p", "-f", "yuv4mpegpipe", str(tmp),
        ],
        input=bytes(frames),
        check=True,
    )  # fmt: skip
    os.replace(tmp, path)


async def _desktop(phone: Phone) -> BrowserContext:
    """A desktop browser context beside the phone (the same Chromium)."""
    browser = phone.context.browser
    assert browser is not None
    return await browser.new_context(viewport={"width": 1280, "height": 900})


async def _rp_request(rp: RelyingPartyClient, text: str) -> dict[str, Any]:
    status, created = await rp.call(
        "POST",
        "/api/v1/rp/signing-requests",
        {
            "display_text": text,
            "documents": [
                {"name": "application.txt", "format": "cades",
                 "content": base64.b64encode(NOTE).decode()}
            ],
        },
    )  # fmt: skip
    assert status == 201, created
    assert created["requester"] == "eGov services"
    return created


async def _rp_status(rp: RelyingPartyClient, request_id: str, want: str) -> dict[str, Any]:
    """Polls the relying party's view of its request until it is `want`."""
    body: dict[str, Any] = {}
    for _ in range(TIMEOUT_MS // 250):
        status, body = await rp.call("GET", f"/api/v1/rp/signing-requests/{request_id}")
        assert status == 200, body
        if body["status"] == want:
            return body
        await asyncio.sleep(0.25)
    raise AssertionError(f"the request is {body.get('status')}, not {want}")


async def _pem(http: aiohttp.ClientSession, base_url: str, which: str) -> bytes:
    async with http.get(f"{base_url}/pki/ca/{which}.pem") as resp:
        assert resp.status == 200
        return await resp.read()


def _problems(traffic: Traffic) -> list[str]:
    """The pages' errors, but Chromium's own notice that an incognito
    context has no Push API (logged by the browser, not by the app)."""
    return [p for p in traffic.problems if "does not support the Push API in incognito" not in p]


async def _photo(app: App, path: Path) -> None:
    """The photo of the code, as the phone's camera app hands it over."""
    await app.page.set_input_files("#scan-photo", str(path))


async def test_a_relying_partys_qr_is_scanned_on_the_phone_and_signed(
    open_phone: PhoneOpener,
    proof: Proofer,
    base_url: str,
    http: aiohttp.ClientSession,
    traffic: Traffic,
    tmp_path: Path,
    relying_party: tuple[RelyingPartyClient, str],
    request_clock: SteppingClock,
) -> None:
    rp, rp_url = relying_party
    _, code = await proof(face="obama_1.jpg")
    phone = await open_phone("obama_2.jpg", service_workers="block")
    app = App(phone, base_url)
    page = phone.page
    await app.enrol(code)
    desktop = await (await _desktop(phone)).new_page()

    # -- a photo of the code --------------------------------------------------------------
    with request_clock.frozen():
        created = await _rp_request(rp, "Sign your application No. 42")
        request_id = created["request_id"]
        await desktop.goto(f"{rp_url}/r/{request_id}")
        await expect(desktop.locator("#code")).to_have_text(created["verification_code"])
        png = await _current_qr(desktop, rp, request_id)
        await shot(desktop, "30-rp-page")
        (tmp_path / "qr1.png").write_bytes(png)
        await app.go("scan")
        await expect(page.locator("#scan-photo")).to_have_attribute("capture", "environment")
        await shot(page, "31-scan")
        await _photo(app, tmp_path / "qr1.png")
        await app.ready("request")
    assert page.url.endswith(f"#/request/{request_id}")
    # Both screens show the same code; the phone computed its own.
    shown = await desktop.locator("#code").inner_text()
    await expect(page.locator("#req-code")).to_have_text(shown)
    await expect(page.locator("#req-from")).to_have_text("eGov services")
    await expect(page.locator("#req-docs li").first).to_have_class(re.compile(r"\bok\b"))
    (claim,) = [json.loads(b) for b in traffic.bodies("/api/v1/device/qr")]
    assert claim == {"qr": _read_qr(png)}

    # Approved with face + password + phone: the relying party gets a CAdES.
    verdict = await app.face_check("#req-face")
    assert "passed" in verdict, verdict
    await page.fill("#req-password", PASSWORD)
    await page.click("#req-approve")
    await expect(page.locator("#req-state")).to_have_text(
        "Signed. Signatures made: 1.", timeout=TIMEOUT_MS
    )
    await shot(page, "32-scan-approved")
    result = await _rp_status(rp, request_id, "approved")
    await expect(desktop.locator("#status")).to_have_text("approved", timeout=TIMEOUT_MS)
    (tmp_path / "root.pem").write_bytes(await _pem(http, base_url, "root"))
    (tmp_path / "issuing.pem").write_bytes(await _pem(http, base_url, "issuing"))
    (tmp_path / "application.txt").write_bytes(NOTE)
    (tmp_path / "application.p7s").write_bytes(
        base64.b64decode(result["documents"][0]["signature"])
    )
    verified = subprocess.run(
        ["openssl", "cms", "-verify", "-binary", "-inform", "DER",
         "-in", str(tmp_path / "application.p7s"), "-content", str(tmp_path / "application.txt"),
         "-CAfile", str(tmp_path / "root.pem"), "-certfile", str(tmp_path / "issuing.pem"),
         "-out", "/dev/null"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stderr

    # -- a stale frame, and one that is no request at all -----------------------------------
    with request_clock.frozen():
        second = await _rp_request(rp, "Sign your application No. 43")
        second_id = second["request_id"]
        await desktop.goto(f"{rp_url}/r/{second_id}")
        old = await _current_qr(desktop, rp, second_id)
        (tmp_path / "old.png").write_bytes(old)
        await request_clock.wait_until(request_clock.time() + STALE_STEP)
        await app.go("scan")
        await _photo(app, tmp_path / "old.png")
        status = page.locator("#scan-status")
        await expect(status).to_have_text(
            "The service refused this code: it is too old (the code changes every second), "
            "the request has ended, or it is not for you. Scan the code the screen shows now.",
            timeout=TIMEOUT_MS,
        )
        await expect(status).to_have_class(re.compile(r"\bbad\b"))
        assert await app.page.evaluate("document.body.dataset.current") == "scan"
        await shot(page, "33-scan-stale")
        # In the citizen's language.
        await page.select_option("#lang", "ru")
        await _photo(app, tmp_path / "old.png")
        await expect(status).to_contain_text("Сервис отклонил этот код", timeout=TIMEOUT_MS)
        await page.select_option("#lang", "en")
        pending = await _rp_status(rp, second_id, "pending")
        assert pending["status"] == "pending"

        other = tmp_path / "other.png"
        segno.make("https://example.kz/not-a-request", error="m").save(
            str(other), kind="png", scale=6, border=4
        )
        await _photo(app, other)
        await expect(status).to_have_text("This QR code is not a cloudsign signature request.")

        # -- the live camera ------------------------------------------------------------------
        # It runs only on this screen: leaving it switches it off.
        await page.click("#scan-start")
        await expect(page.locator("body")).to_have_attribute("data-camera", "on")
        await app.go("inbox")
        await expect(page.locator("body")).to_have_attribute("data-camera", "off")
        assert await page.evaluate("document.getElementById('scan-video').srcObject") is None

        # The page's current frame (the time moved on), through the camera.
        now = await _current_qr(desktop, rp, second_id)
        assert _read_qr(now) != _read_qr(old)
        _qr_clip(phone.camera.path, now)
        await app.go("scan")
        await page.click("#scan-start")
        await app.ready("request")
    assert page.url.endswith(f"#/request/{second_id}")
    await expect(page.locator("#req-code")).to_have_text(second["verification_code"])
    await expect(desktop.locator("#code")).to_have_text(second["verification_code"])
    await expect(page.locator("body")).to_have_attribute("data-camera", "off")
    assert await page.evaluate("document.getElementById('scan-video').srcObject") is None
    claims = [json.loads(b) for b in traffic.bodies("/api/v1/device/qr")]
    assert claims[-1] == {"qr": _read_qr(now)}
    await shot(page, "34-scan-live")
    # Declined on the phone: the relying party learns it, nothing is signed.
    await page.click("#req-decline")
    await expect(page.locator("#req-state")).to_have_text("Declined. Nothing was signed.")
    declined = await _rp_status(rp, second_id, "declined")
    assert all("signature" not in d for d in declined["documents"])

    found = leaks(traffic, {"password": PASSWORD.encode()})
    assert not found, found
    assert not traffic.problems, traffic.problems
    # The stale frame's refusals (404), and nothing else, failed.
    assert traffic.failures == [f"404 POST {base_url}/api/v1/device/qr"] * 2, traffic.failures


async def test_a_push_reaches_the_apps_service_worker(
    open_phone: PhoneOpener,
    proof: Proofer,
    base_url: str,
    http: aiohttp.ClientSession,
    traffic: Traffic,
    push_endpoint: tuple[asyncio.Queue[tuple[CIMultiDict[str], bytes]], str],  # noqa: F811
) -> None:
    received, endpoint = push_endpoint
    _, code = await proof(face="obama_1.jpg")
    phone = await open_phone("obama_2.jpg")  # service workers allowed
    app = App(phone, base_url)
    page = phone.page
    cdp = phone.cdp
    registrations: list[dict[str, Any]] = []
    cdp.on(
        "ServiceWorker.workerRegistrationUpdated",
        lambda e: registrations.extend(e["registrations"]),
    )
    await cdp.send("ServiceWorker.enable")
    await app.enrol(code)
    await app.go("inbox")
    await page.wait_for_function("navigator.serviceWorker.controller !== null", timeout=TIMEOUT_MS)
    # Notifications not yet allowed: the inbox offers them (the browser asks on a tap).
    await expect(page.locator("body")).to_have_attribute("data-push", "ask")
    await expect(page.locator("#push-offer")).to_be_visible()
    assert not traffic.problems, traffic.problems
    await phone.context.grant_permissions(["notifications"], origin=base_url)
    await page.click("#push-enable")
    # Allowed, the app subscribes: this browser has no push service
    # (Playwright's contexts are incognito, where Chromium refuses the Push
    # API, and says so in the console itself); the app goes on without it.
    await expect(page.locator("body")).to_have_attribute("data-push", "off")
    await expect(page.locator("#push-offer")).to_be_hidden()
    assert _problems(traffic) == [], traffic.problems

    # The bound device's subscription, through the app's route: the test's
    # endpoint and keys.
    token = await app.token()
    owner = CloudsignClient(base_url, http, access_token=token)
    (device,) = await owner.devices()
    receiver = ec.generate_private_key(ec.SECP256R1())
    p256dh = receiver.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    auth = secrets.token_bytes(16)
    await owner.request(
        "PUT",
        f"/api/v1/me/devices/{device['device_id']}/push",
        {"endpoint": endpoint, "keys": {"p256dh": b64url(p256dh), "auth": b64url(auth)}},
    )

    # A request from another screen: the service pushes it.
    made = await owner.create_signing_request(
        [{"name": "order.txt", "format": "cades", "content": NOTE}], "Sign the order"
    )
    headers, body = await asyncio.wait_for(received.get(), timeout=30)
    key = (await owner.request("GET", "/api/v1/push/key"))["public_key"]
    _verify_vapid(headers["Authorization"], key, endpoint)
    assert headers["Content-Encoding"] == "aes128gcm"
    payload = http_ece.decrypt(body, private_key=receiver, auth_secret=auth)
    message = json.loads(payload)
    assert message == {
        "type": "signing-request",
        "request_id": made["request_id"],
        "requester": "cloudsign portal",
        "verification_code": made["verification_code"],
    }

    # The push service hands it to the phone's service worker.
    scope = f"{base_url}/app/"
    for _ in range(TIMEOUT_MS // 100):
        live = [r for r in registrations if r["scopeURL"] == scope and not r["isDeleted"]]
        if live:
            break
        await asyncio.sleep(0.1)
    assert live, registrations
    await cdp.send(
        "ServiceWorker.deliverPushMessage",
        {
            "origin": base_url,
            "registrationId": live[-1]["registrationId"],
            "data": payload.decode(),
        },
    )
    # The open app was told: it says who asks and the code, and lists the request.
    await expect(page.locator("body")).to_have_attribute(
        "data-pushed", made["request_id"], timeout=TIMEOUT_MS
    )
    await expect(page.locator("#flash")).to_have_text(
        f"New request from cloudsign portal, verification code {made['verification_code']}."
    )
    await expect(
        page.locator(f".request-item[data-request='{made['request_id']}']")
    ).to_be_visible()
    await shot(page, "35-push")
    # And the worker showed a notification: the requester and the code.
    notes = await page.evaluate(
        "navigator.serviceWorker.ready.then(r => r.getNotifications())"
        ".then(ns => ns.map(n => ({title: n.title, body: n.body, data: n.data})))"
    )
    assert notes == [
        {
            "title": "Signature request: cloudsign portal",
            "body": f"Verification code {made['verification_code']}. "
            "Open the app to check and approve.",
            "data": {"request_id": made["request_id"]},
        }
    ], notes
    assert _problems(traffic) == [], traffic.problems


async def test_an_egov_services_qr_is_scanned_and_its_procedure_signed(
    open_phone: PhoneOpener,
    proof: Proofer,
    base_url: str,
    http: aiohttp.ClientSession,
    staff: Staff,
    tmp_path: Path,
) -> None:
    """An e-government service's QR (a `mobileSign:` link, docs/egov-qr.md):
    the app hands the link to the service, which fetches the procedure; the
    phone approves it as any request, and the e-gov service receives a CMS
    that `openssl cms -verify` accepts."""
    async for egov in running_service():
        await staff.security.request(
            "POST",
            "/operator/api/v1/relying-parties",
            {"name": "Test agency (eGov)", "egov_prefix": egov.prefix},
        )
        egov.trust(
            [
                (await _pem(http, base_url, "issuing")).decode(),
                (await _pem(http, base_url, "root")).decode(),
            ]
        )
        _, code = await proof(face="obama_1.jpg")
        phone = await open_phone("obama_2.jpg", service_workers="block")
        app = App(phone, base_url)
        page = phone.page
        await app.enrol(code)
        link, proc = egov.new([("application.txt", NOTE, "text/plain")])
        picture = tmp_path / "egov.png"
        segno.make(link, error="m").save(str(picture), kind="png", scale=6, border=4)
        assert _read_qr(picture.read_bytes()) == link
        await app.go("scan")
        await _photo(app, picture)
        await app.ready("request")
        await expect(page.locator("#req-from")).to_have_text("Test agency (eGov)")
        assert proc.api1_hits == 1 and proc.api2_hits == 1
        verdict = await app.face_check("#req-face")
        assert "passed" in verdict, verdict
        await page.fill("#req-password", PASSWORD)
        await page.click("#req-approve")
        await expect(page.locator("#req-state")).to_have_text(
            "Signed. Signatures made: 1.", timeout=TIMEOUT_MS
        )
        await asyncio.wait_for(proc.signed.wait(), timeout=TIMEOUT_MS / 1000)
        assert proc.errors == [] and proc.verified == {1: NOTE}
        # The same QR again: a procedure is signed once.
        await app.go("scan")
        await _photo(app, picture)
        await expect(page.locator("#scan-status")).to_have_class(re.compile(r"\bbad\b"))
        assert proc.api1_hits == 1
