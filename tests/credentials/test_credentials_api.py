"""Enrolment over real HTTP against the real SoftHSM2 token, on both databases."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from asn1crypto import x509
from sqlalchemy import func, select

from cloudsign.appkeys import DATABASE
from cloudsign.ca.identity import check_digit
from cloudsign.ca.tables import certificates
from cloudsign.credentials.tables import credentials
from cloudsign.storage.schema import events
from device_client.client import ApiError, CloudsignClient, TotpDevice
from tests.face_images import live_burst
from tests.helpers import (
    TOTP_CLOCK,
    activated,
    enrolled,
    make_bin,
    new_client,
    passed_face_check,
    person,
)

PASSWORD = "correct horse battery"

WRONG_CHECK_DIGIT_IIN = "90010131234" + str(((check_digit("90010131234") or 0) + 1) % 10)


def _pem_chain(tmp_path: Path, cred: dict[str, Any]) -> tuple[Path, Path, Path]:
    leaf = tmp_path / "leaf.pem"
    issuing = tmp_path / "issuing.pem"
    root = tmp_path / "root.pem"
    leaf.write_text(cred["certificate"])
    issuing.write_text(cred["chain"][0])
    root.write_text(cred["chain"][1])
    return leaf, issuing, root


async def test_enrol_issues_certificate_that_openssl_verifies(
    client: CloudsignClient, tmp_path: Path
) -> None:
    identity = person(surname="Abenov", given_name="Dauren")
    _, cred = await enrolled(client, identity=identity)
    leaf, issuing, root = _pem_chain(tmp_path, cred)
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", str(root), "-untrusted", str(issuing), str(leaf)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0, verify.stderr
    assert verify.stdout.strip().endswith(": OK")
    text = subprocess.run(
        ["openssl", "x509", "-in", str(leaf), "-noout", "-text", "-nameopt", "RFC2253"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"serialNumber=IIN{identity['iin']}" in text
    assert "CN=Abenov Dauren" in text
    assert "SN=Abenov" in text
    assert "GN=Dauren" in text
    assert "C=KZ" in text
    assert f"emailAddress={identity['email']}" in text
    assert "Digital Signature, Non Repudiation" in text
    assert "CA:FALSE" in text
    assert "Policy: 2.999.1.1" in text
    assert "/pki/crl/issuing.crl" in text
    assert "OCSP - URI:" in text and "/pki/ocsp" in text
    cert = x509.Certificate.load(
        subprocess.run(
            ["openssl", "x509", "-in", str(leaf), "-outform", "DER"],
            capture_output=True,
            check=True,
        ).stdout
    )
    days = (cert.not_valid_after - cert.not_valid_before).days
    assert 365 <= days <= 366


async def test_organisation_certificate_has_o_and_bin(
    client: CloudsignClient, tmp_path: Path
) -> None:
    bin_ = make_bin()
    _, cred = await enrolled(
        client,
        identity=person(kind="organisation", bin=bin_, organisation="ТОО Ромашка"),
        algorithm="rsa-2048",
    )
    leaf, issuing, root = _pem_chain(tmp_path, cred)
    text = subprocess.run(
        ["openssl", "x509", "-in", str(leaf), "-noout", "-subject", "-nameopt", "RFC2253,-esc_msb"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"OU=BIN{bin_}" in text
    assert "O=ТОО Ромашка" in text
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", str(root), "-untrusted", str(issuing), str(leaf)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0, verify.stderr


async def test_events_written_with_the_change(client: CloudsignClient, app: Any) -> None:
    totp, cred = await enrolled(client)
    db = app[DATABASE]
    async with db.read() as conn:
        rows = (
            await conn.execute(
                select(events.c.event_type, events.c.owner_id, events.c.occurred_at)
                .where(events.c.credential_id == cred["credential_id"])
                .order_by(events.c.seq)
            )
        ).all()
    assert [r[0] for r in rows] == ["key.create", "cert.issue"]
    assert all(r[1] == client.owner_id for r in rows)
    assert all(r[2].tzinfo is not None for r in rows)

    await client.delete_credential(
        cred["credential_id"],
        password=PASSWORD,
        face_challenge_id=await passed_face_check(client),
        otp=await totp.fresh_code(),
    )
    async with db.read() as conn:
        kinds = (
            (
                await conn.execute(
                    select(events.c.event_type)
                    .where(events.c.credential_id == cred["credential_id"])
                    .order_by(events.c.seq)
                )
            )
            .scalars()
            .all()
        )
        blob, status = (
            await conn.execute(
                select(credentials.c.key_blob, credentials.c.status).where(
                    credentials.c.id == cred["credential_id"]
                )
            )
        ).one()
        cert_status = (
            await conn.execute(
                select(certificates.c.status).where(
                    certificates.c.serial == cred["certificate_serial"]
                )
            )
        ).scalar_one()
    assert list(kinds) == ["key.create", "cert.issue", "key.destroy", "cert.revoke"]
    assert blob is None and status == "deleted"
    assert cert_status == "revoked"
    listed = await client.credentials()
    assert listed[0]["status"] == "deleted"
    # Deleting again: nothing left to delete.
    with pytest.raises(ApiError) as err:
        await client.delete_credential(
            cred["credential_id"],
            password=PASSWORD,
            face_challenge_id=await passed_face_check(client),
            otp=await totp.fresh_code(),
        )
    assert err.value.status == 404


async def _enrolment(client: CloudsignClient) -> TotpDevice:
    """Proofed and activated, consents and TOTP done: the key is next."""
    await activated(client)
    await client.accept_consents()
    return await client.setup_totp()


async def _create(
    client: CloudsignClient, wrapped: Any, otp: str | None, face: str | None
) -> dict[str, Any]:
    result: dict[str, Any] = await client.request(
        "POST",
        "/api/v1/me/credentials",
        {
            "algorithm": "ec-p256",
            "password_key": wrapped.to_json(),
            "otp": otp,
            "face_challenge_id": face,
        },
    )
    return result


async def test_no_certificate_without_identity_proofing(
    client: CloudsignClient, http: aiohttp.ClientSession, base_url: str
) -> None:
    """No token, or a full session of a citizen who already has a key: no
    new key; an enrolment session of a redeemed proofing backs exactly one."""
    anonymous = new_client(base_url, http)
    with pytest.raises(ApiError) as err:
        await anonymous.request("POST", "/api/v1/me/credentials", {"algorithm": "ec-p256"})
    assert err.value.status == 401
    # The old self-service routes are gone.
    for path in ("/api/v1/owners", "/portal/session/register"):
        async with http.post(base_url + path, json=person()) as resp:
            assert resp.status in (404, 405), path
    totp, cred = await enrolled(client)
    wrapped = await client.wrap_password(PASSWORD, "credential.create")
    face = await passed_face_check(client)
    with pytest.raises(ApiError) as err:
        await _create(client, wrapped, await totp.fresh_code(), face)
    assert err.value.status == 403
    assert "proofing" in err.value.body["detail"]
    assert [c["credential_id"] for c in await client.credentials()] == [cred["credential_id"]]


async def test_a_redeemed_proofing_backs_one_key(client: CloudsignClient) -> None:
    totp = await _enrolment(client)
    face = await passed_face_check(client)
    await _create(
        client,
        await client.wrap_password(PASSWORD, "credential.create"),
        await totp.fresh_code(),
        face,
    )
    # The session is a full one now, and a second key needs a new proofing.
    assert (await client.request("GET", "/api/v1/me"))["session"] == "full"
    face = await passed_face_check(client)
    with pytest.raises(ApiError) as err:
        await _create(
            client,
            await client.wrap_password(PASSWORD, "credential.create"),
            await totp.fresh_code(),
            face,
        )
    assert err.value.status == 403
    assert len(await client.credentials()) == 1


async def test_otp_wrong_or_replayed_is_refused(client: CloudsignClient) -> None:
    totp = await _enrolment(client)
    wrapped = await client.wrap_password("pw", "credential.create")
    face = await passed_face_check(client)
    later_face = await passed_face_check(client)
    # The TOTP clock stands still: the replay below is inside the code's step
    # however slow the machine is, so "already used" is what is tested.
    with TOTP_CLOCK.frozen():
        code = await totp.fresh_code()
        wrong = f"{(int(code) + 1) % 1_000_000:06d}"
        with pytest.raises(ApiError) as err:
            await _create(client, wrapped, wrong, face)
        assert err.value.status == 403 and err.value.code == "factor_failed"
        # The wrong code spent neither the face check nor the transport key.
        await _create(client, wrapped, code, face)
        creds = await client.credentials()
        with pytest.raises(ApiError) as err:
            await client.delete_credential(
                creds[0]["credential_id"], password="pw", otp=code, face_challenge_id=later_face
            )
    assert err.value.status == 403 and "already used" in err.value.body["detail"]


async def test_credential_requires_consent_totp_and_a_face_check(client: CloudsignClient) -> None:
    await activated(client)
    wrapped = await client.wrap_password("pw", "credential.create")
    with pytest.raises(ApiError) as err:
        await _create(client, wrapped, "123456", None)
    assert err.value.status == 409 and err.value.code == "precondition_failed"
    assert "consent" in err.value.body["detail"]
    await client.accept_consents()
    with pytest.raises(ApiError) as err:
        await _create(client, wrapped, "123456", None)
    assert err.value.status == 409 and "TOTP" in err.value.body["detail"]
    totp = await client.setup_totp()
    with pytest.raises(ApiError) as err:
        await _create(client, wrapped, await totp.fresh_code(), None)
    assert err.value.status == 403 and "face" in err.value.body["detail"]
    # A face that is not the one captured at the desk.
    ch = await client.face_challenge()
    with pytest.raises(ApiError):
        await client.send_burst(ch["challenge_id"], live_burst("biden_2.jpg", ch["actions"]))
    with pytest.raises(ApiError) as err:
        await _create(client, wrapped, await totp.fresh_code(), ch["challenge_id"])
    assert err.value.status == 403
    assert await client.credentials() == []


async def test_racing_credential_requests_create_exactly_one(
    client: CloudsignClient, app: Any
) -> None:
    totp = await _enrolment(client)
    first = await client.wrap_password("pw", "credential.create")
    second = await client.wrap_password("pw", "credential.create")
    faces = [await passed_face_check(client), await passed_face_check(client)]
    code = await totp.fresh_code()
    # The next time step: the two requests must not lose on the OTP replay check.
    later = totp.totp.at(totp.clock.time() + totp.totp.interval)

    async def attempt(wrapped: Any, otp: str, face: str) -> int:
        try:
            await _create(client, wrapped, otp, face)
        except ApiError as e:
            return e.status
        return 201

    statuses = sorted(
        await asyncio.gather(attempt(first, code, faces[0]), attempt(second, later, faces[1]))
    )
    assert statuses[0] == 201
    assert statuses[1] in (403, 409)
    async with app[DATABASE].read() as conn:
        n_active = (
            await conn.execute(
                select(func.count()).where(
                    credentials.c.owner_id == client.owner_id, credentials.c.status == "active"
                )
            )
        ).scalar_one()
        n_events = (
            await conn.execute(
                select(func.count()).where(
                    events.c.owner_id == client.owner_id, events.c.event_type == "key.create"
                )
            )
        ).scalar_one()
        n_certs = (
            await conn.execute(
                select(func.count()).where(certificates.c.owner_id == client.owner_id)
            )
        ).scalar_one()
    assert (n_active, n_events, n_certs) == (1, 1, 1)
