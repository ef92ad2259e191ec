"""A signature started on the desktop portal and approved on the bound phone:
the QR, the same code on both screens, the approval with face + password +
device, the signatures at the requester; and every refusal."""

from __future__ import annotations

import base64
import hashlib
import io
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from asn1crypto import pem, x509
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko_certvalidator import ValidationContext
from sqlalchemy import select, update

from cloudsign.appkeys import DATABASE, HSM
from cloudsign.storage.schema import events
from device_client.authenticator import SoftAuthenticator
from device_client.client import ApiError, CloudsignClient
from mobile_api.codes import qr_frame
from mobile_api.tables import signing_requests
from tests.helpers import enrolled, new_client, passed_face_check
from tests.mobile.test_devices import PASSWORD, phone_enrolled
from tests.pdfs import simple_pdf


async def desktop_and_phone(
    client: CloudsignClient, http: aiohttp.ClientSession
) -> tuple[CloudsignClient, CloudsignClient, SoftAuthenticator, dict[str, Any]]:
    """`client` is the phone's app session; the desktop logs in on its own."""
    phone, cred, identity = await phone_enrolled(client)
    desktop = new_client(client.base_url, http)
    await desktop.login(identity["iin"], None, PASSWORD, device=phone)
    return desktop, client, phone, cred


def _root(cred: dict[str, Any]) -> x509.Certificate:
    return x509.Certificate.load(pem.unarmor(cred["chain"][-1].encode())[2])


async def test_portal_request_approved_on_the_phone(
    client: CloudsignClient, http: aiohttp.ClientSession, server: Any, tmp_path: Path
) -> None:
    desktop, app, phone, cred = await desktop_and_phone(client, http)
    pdf = simple_pdf("Contract 7")
    text = b"a text signed in CAdES"
    raw = hashlib.sha256(b"a hash signed raw").digest()
    created = await desktop.create_signing_request(
        [
            {"name": "contract.pdf", "format": "pades", "content": pdf},
            {"name": "note.txt", "format": "cades", "content": text},
            {"name": "digest", "format": "raw", "hash": raw},
        ],
        "Sign the contract and its note",
    )
    request_id, code = created["request_id"], created["verification_code"]
    assert created["status"] == "pending" and len(code) == 4

    # The phone scans the QR the desktop shows: the same request, the same code.
    frame = await desktop.qr_frame(request_id)
    claimed = await app.claim_qr(frame)
    assert claimed["request_id"] == request_id and claimed["verification_code"] == code
    assert [r["request_id"] for r in await app.inbox()] == [request_id]

    face = await passed_face_check(app)
    approved = await app.approve(request_id, phone, password=PASSWORD, face_challenge_id=face)
    assert approved["status"] == "approved"

    result = await desktop.signing_request(request_id)
    assert result["status"] == "approved"
    signed_pdf, cms, raw_sig = (base64.b64decode(d["signature"]) for d in result["documents"])
    reader = PdfFileReader(io.BytesIO(signed_pdf))
    (embedded,) = reader.embedded_signatures
    status = await async_validate_pdf_signature(
        embedded, ValidationContext(trust_roots=[_root(cred)])
    )
    assert status.intact and status.valid and status.trusted, status.pretty_print_details()

    (tmp_path / "note.txt").write_bytes(text)
    (tmp_path / "note.p7s").write_bytes(cms)
    (tmp_path / "root.pem").write_text(cred["chain"][-1])
    (tmp_path / "chain.pem").write_text("".join(cred["chain"]))
    verified = subprocess.run(
        ["openssl", "cms", "-verify", "-binary", "-inform", "DER",
         "-in", str(tmp_path / "note.p7s"), "-content", str(tmp_path / "note.txt"),
         "-CAfile", str(tmp_path / "root.pem"), "-certfile", str(tmp_path / "chain.pem"),
         "-out", "/dev/null"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    assert raw_sig

    async with server.app[DATABASE].read() as conn:
        rows = list(
            await conn.execute(
                select(events.c.event_type, events.c.data).where(events.c.owner_id == app.owner_id)
            )
        )
    types = [r[0] for r in rows]
    assert types.count("key.use") == 3
    assert "request.create" in types and "request.decide" in types
    # Decided once: a second approval (or a decline) changes nothing.
    face = await passed_face_check(app)
    with pytest.raises(ApiError) as e:
        await app.approve(request_id, phone, password=PASSWORD, face_challenge_id=face)
    assert e.value.status == 409


async def test_refused_approvals_give_no_signature(
    client: CloudsignClient, http: aiohttp.ClientSession, server: Any
) -> None:
    desktop, app, phone, _cred = await desktop_and_phone(client, http)

    async def new_request(n: int) -> str:
        digest = hashlib.sha256(f"document {n}".encode()).digest()
        made = await desktop.create_signing_request(
            [{"name": "h", "format": "raw", "hash": digest}], "text"
        )
        return str(made["request_id"])

    # A wrong verification code: the app itself refuses to ask the
    # authenticator (its challenge would not be the service's) ...
    request_id = await new_request(1)
    code = (await desktop.signing_request(request_id))["verification_code"]
    wrong = f"{(int(code) + 1) % 10000:04d}"
    with pytest.raises(ValueError, match="other than what is shown"):
        await app.approve(
            request_id, phone, password=PASSWORD, face_challenge_id=None, shown_code=wrong
        )
    # ... and the service refuses a genuine assertion sent with another code.
    issued = await app.request("POST", f"/api/v1/device/requests/{request_id}/challenge", {})
    with pytest.raises(ApiError) as e:
        await app.request(
            "POST",
            f"/api/v1/device/requests/{request_id}/approval",
            {
                "verification_code": wrong,
                "device": {
                    "challenge_id": issued["challenge_id"],
                    "credential": phone.get(issued["options"]),
                },
                "face_challenge_id": await passed_face_check(app),
                "password_key": (await app.wrap_password(PASSWORD, "authorize")).to_json(),
            },
        )
    assert e.value.status == 403

    # An assertion made for another request.
    other_id = await new_request(2)
    issued = await app.request("POST", f"/api/v1/device/requests/{other_id}/challenge", {})
    details = await app.request_details(request_id)
    foreign = {"challenge_id": issued["challenge_id"], "credential": phone.get(issued["options"])}
    with pytest.raises(ApiError) as e:
        await app.request(
            "POST",
            f"/api/v1/device/requests/{request_id}/approval",
            {
                "verification_code": details["verification_code"],
                "device": foreign,
                "face_challenge_id": await passed_face_check(app),
                "password_key": (await app.wrap_password(PASSWORD, "authorize")).to_json(),
            },
        )
    assert e.value.status == 403

    # Declined: no approval after it.
    await app.decline(other_id)
    with pytest.raises(ApiError) as e:
        await app.approve(other_id, phone, password=PASSWORD, face_challenge_id=None)
    assert e.value.status == 409

    # Another citizen cannot see, claim or approve it.
    stranger = new_client(client.base_url, http)
    await phone_enrolled(stranger)
    with pytest.raises(ApiError) as e:
        await stranger.request_details(request_id)
    assert e.value.status == 404
    with pytest.raises(ApiError) as e:
        await stranger.claim_qr(await desktop.qr_frame(request_id))
    assert e.value.status == 404

    result = await desktop.signing_request(request_id)
    assert all("signature" not in d for d in result["documents"])
    async with server.app[DATABASE].read() as conn:
        uses = list(
            await conn.execute(
                select(events.c.seq).where(
                    events.c.owner_id == app.owner_id, events.c.event_type == "key.use"
                )
            )
        )
    assert uses == []


async def test_stale_qr_frames_and_expired_requests_are_refused(
    client: CloudsignClient, http: aiohttp.ClientSession, server: Any
) -> None:
    desktop, app, phone, _cred = await desktop_and_phone(client, http)
    made = await desktop.create_signing_request(
        [{"name": "h", "format": "raw", "hash": hashlib.sha256(b"qr").digest()}], "text"
    )
    request_id = made["request_id"]
    # Shown on the desktop for twenty seconds already.
    async with server.app[DATABASE].transaction() as conn:
        await conn.execute(
            update(signing_requests)
            .where(signing_requests.c.id == request_id)
            .values(created_at=datetime.now(UTC) - timedelta(seconds=20))
        )
    frame = await desktop.qr_frame(request_id)
    # Garbage and a forged HMAC.
    forged = frame[:-1] + ("0" if frame[-1] != "0" else "1")
    for bad in ("", "cloudsign", forged, "x" * 180, "cloudsign." + request_id + ".1.zz"):
        with pytest.raises(ApiError) as e:
            await app.claim_qr(bad)
        assert e.value.status in (400, 404)
    # A photographed frame, ten seconds old: a genuine HMAC, a stale time.
    _prefix, _id, elapsed, _auth = frame.split(".")
    secret = await server.app[HSM].hmac_sha256("mobile-qr", request_id.encode())
    for t in (int(elapsed) - 10, int(elapsed) + 30):
        old = qr_frame(request_id, secret, t)
        with pytest.raises(ApiError) as e:
            await app.claim_qr(old)
        assert e.value.status == 404, t
    assert (await app.claim_qr(frame))["request_id"] == request_id
    # Past its lifetime the request expires; nothing can approve it.
    async with server.app[DATABASE].transaction() as conn:
        await conn.execute(
            update(signing_requests)
            .where(signing_requests.c.id == request_id)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert (await desktop.signing_request(request_id))["status"] == "expired"
    with pytest.raises(ApiError) as e:
        await app.approve(request_id, phone, password=PASSWORD, face_challenge_id=None)
    assert e.value.status == 409
    with pytest.raises(ApiError) as e:
        await desktop.qr_frame(request_id)
    assert e.value.status == 409


async def test_revoking_the_phone_ends_its_pending_requests(
    client: CloudsignClient, http: aiohttp.ClientSession
) -> None:
    desktop, app, phone, _cred = await desktop_and_phone(client, http)
    made = await desktop.create_signing_request(
        [{"name": "h", "format": "raw", "hash": hashlib.sha256(b"lost").digest()}], "text"
    )
    (device,) = await desktop.devices()
    await desktop.revoke_device(
        device["device_id"], password=PASSWORD, face_challenge_id=await passed_face_check(desktop)
    )
    assert (await desktop.signing_request(made["request_id"]))["status"] == "failed"
    with pytest.raises(ApiError):
        await app.approve(made["request_id"], phone, password=PASSWORD, face_challenge_id=None)


async def test_the_requester_withdraws_an_undecided_request(
    client: CloudsignClient, http: aiohttp.ClientSession, server: Any
) -> None:
    desktop, app, phone, _cred = await desktop_and_phone(client, http)
    digest = hashlib.sha256(b"withdrawn").digest()
    made = await desktop.create_signing_request(
        [{"name": "h", "format": "raw", "hash": digest}], "text"
    )
    request_id = made["request_id"]
    withdrawn = await desktop.request("DELETE", f"/api/v1/signing-requests/{request_id}")
    assert withdrawn["status"] == "withdrawn"
    # The phone no longer sees it, and cannot approve it.
    assert await app.inbox() == []
    with pytest.raises(ApiError) as e:
        await app.approve(
            request_id, phone, password=PASSWORD, face_challenge_id=await passed_face_check(app)
        )
    assert e.value.status == 409
    # Decided already: withdrawing again is a conflict; another citizen's is no request.
    with pytest.raises(ApiError) as e:
        await desktop.request("DELETE", f"/api/v1/signing-requests/{request_id}")
    assert e.value.status == 409
    stranger = new_client(client.base_url, http)
    await phone_enrolled(stranger)
    other = await desktop.create_signing_request(
        [{"name": "h", "format": "raw", "hash": digest}], "text"
    )
    with pytest.raises(ApiError) as e:
        await stranger.request("DELETE", f"/api/v1/signing-requests/{other['request_id']}")
    assert e.value.status == 404
    async with server.app[DATABASE].read() as conn:
        decisions = [
            r[0]["decision"]
            for r in await conn.execute(
                select(events.c.data)
                .where(events.c.owner_id == app.owner_id, events.c.event_type == "request.decide")
                .order_by(events.c.seq)
            )
        ]
    assert decisions == ["withdrawn"]


async def test_a_request_needs_a_bound_phone_and_says_so(
    client: CloudsignClient,
) -> None:
    await enrolled(client)
    with pytest.raises(ApiError) as e:
        await client.create_signing_request(
            [{"name": "h", "format": "raw", "hash": hashlib.sha256(b"x").digest()}], "text"
        )
    assert e.value.status == 409 and e.value.body["code"] == "no_device"
