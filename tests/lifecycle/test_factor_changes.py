"""Every path that changes who can sign needs what signing needs.

Over real HTTP, on both databases: each change (delete the key, delete the
account, replace the face, a new password, a new key, a new TOTP factor) is
refused with a TOTP code alone and with any two factors, and changes nothing;
with every factor it does what it says, and the audit log records it. A
lost password is not recovered: a fresh identity proofing makes a new key.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from sqlalchemy import select

from cloudsign.appkeys import DATABASE
from cloudsign.ca.tables import certificates
from cloudsign.storage.schema import events
from device_client.client import ApiError, CloudsignClient, TotpDevice
from tests.face_images import photo
from tests.helpers import activated, enrolled, passed_face_check, person
from tests.staff import Staff

PASSWORD = "correct horse battery"
NEW_PASSWORD = "a new horse, battery staple"

Change = Callable[[CloudsignClient, dict[str, Any], dict[str, Any]], Awaitable[Any]]


async def _delete_credential(c: CloudsignClient, cred: dict[str, Any], f: dict[str, Any]) -> Any:
    return await c.delete_credential(cred["credential_id"], **f)


async def _delete_account(c: CloudsignClient, cred: dict[str, Any], f: dict[str, Any]) -> Any:
    return await c.delete_account(**f)


async def _replace_face(c: CloudsignClient, cred: dict[str, Any], f: dict[str, Any]) -> Any:
    return await c.replace_face([photo("obama_2.jpg")], **f)


async def _change_password(c: CloudsignClient, cred: dict[str, Any], f: dict[str, Any]) -> Any:
    return await c.change_password(cred["credential_id"], new_password=NEW_PASSWORD, **f)


async def _rekey(c: CloudsignClient, cred: dict[str, Any], f: dict[str, Any]) -> Any:
    return await c.rekey(cred["credential_id"], new_password=NEW_PASSWORD, **f)


async def _reset_totp(c: CloudsignClient, cred: dict[str, Any], f: dict[str, Any]) -> Any:
    f = {k: v for k, v in f.items() if k != "otp"}
    return await c.reset_totp(**f)


CHANGES: dict[str, Change] = {
    "delete-credential": _delete_credential,
    "delete-account": _delete_account,
    "replace-face": _replace_face,
    "change-password": _change_password,
    "rekey": _rekey,
    "reset-totp": _reset_totp,
}


async def _sign(
    client: CloudsignClient, totp: TotpDevice, cred: dict[str, Any], password: str
) -> bytes:
    """A signature over a random digest, checked against the certificate."""
    digest = os.urandom(32)
    sad = await client.authorize(
        cred["credential_id"],
        [digest],
        password=password,
        face_challenge_id=await passed_face_check(client),
        otp=await totp.fresh_code(),
    )
    (signature,) = await client.sign_hashes(cred["credential_id"], sad, [digest])
    key = x509.load_pem_x509_certificate(cred["certificate"].encode()).public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    key.verify(signature, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    return signature


async def _kinds(app: Any, owner_id: str | None) -> list[str]:
    async with app[DATABASE].read() as conn:
        return list(
            (
                await conn.execute(
                    select(events.c.event_type)
                    .where(events.c.owner_id == owner_id)
                    .order_by(events.c.seq)
                )
            )
            .scalars()
            .all()
        )


@pytest.mark.parametrize("change", sorted(CHANGES))
async def test_one_or_two_factors_change_nothing(
    client: CloudsignClient, app: Any, change: str
) -> None:
    totp, cred = await enrolled(client)
    partial: list[dict[str, Any]] = [
        # A TOTP code alone: what the old API accepted.
        {"password": None, "otp": await totp.fresh_code(), "face_challenge_id": None},
        # The code and the password, no face.
        {"password": PASSWORD, "otp": await totp.fresh_code(), "face_challenge_id": None},
        # The code and the face, no password.
        {
            "password": None,
            "face_challenge_id": await passed_face_check(client),
            "otp": await totp.fresh_code(),
        },
        # Every factor, but the password is wrong.
        {
            "password": "not the password",
            "face_challenge_id": await passed_face_check(client),
            "otp": await totp.fresh_code(),
        },
    ]
    if change != "reset-totp":  # there the code is what is being replaced
        # The face and the password, no code.
        partial.append(
            {
                "password": PASSWORD,
                "otp": None,
                "face_challenge_id": await passed_face_check(client),
            }
        )
    before = await _kinds(app, client.owner_id)
    for factors in partial:
        with pytest.raises(ApiError) as err:
            await CHANGES[change](client, cred, factors)
        assert err.value.status in (400, 403), (factors.keys(), err.value.body)
    changes = {"key.destroy", "cert.revoke", "account.delete", "face.enrol", "factor.change"}
    assert not changes & set((await _kinds(app, client.owner_id))[len(before) :])
    # Still the same account, key, password, face and TOTP: it signs.
    assert [c["status"] for c in await client.credentials()] == ["active"]
    await _sign(client, totp, cred, PASSWORD)


async def test_delete_the_key_with_every_factor(client: CloudsignClient, app: Any) -> None:
    totp, cred = await enrolled(client)
    await client.delete_credential(
        cred["credential_id"],
        password=PASSWORD,
        face_challenge_id=await passed_face_check(client),
        otp=await totp.fresh_code(),
    )
    assert [c["status"] for c in await client.credentials()] == ["deleted"]
    assert {"key.destroy", "cert.revoke"} <= set(await _kinds(app, client.owner_id))


async def test_a_new_password_for_the_same_key(client: CloudsignClient, app: Any) -> None:
    totp, cred = await enrolled(client)
    await client.change_password(
        cred["credential_id"],
        password=PASSWORD,
        new_password=NEW_PASSWORD,
        face_challenge_id=await passed_face_check(client),
        otp=await totp.fresh_code(),
    )
    # Same key and certificate, new password; the old one opens nothing.
    await _sign(client, totp, cred, NEW_PASSWORD)
    with pytest.raises(ApiError) as err:
        await _sign(client, totp, cred, PASSWORD)
    assert err.value.status == 403
    assert "factor.change" in await _kinds(app, client.owner_id)


async def test_a_new_key_revokes_the_old_certificate(client: CloudsignClient, app: Any) -> None:
    totp, cred = await enrolled(client)
    new = await client.rekey(
        cred["credential_id"],
        password=PASSWORD,
        new_password=NEW_PASSWORD,
        face_challenge_id=await passed_face_check(client),
        otp=await totp.fresh_code(),
    )
    assert new["credential_id"] != cred["credential_id"]
    await _sign(client, totp, new, NEW_PASSWORD)
    statuses = {c["credential_id"]: c["status"] for c in await client.credentials()}
    assert statuses == {cred["credential_id"]: "deleted", new["credential_id"]: "active"}
    async with app[DATABASE].read() as conn:
        old = (
            await conn.execute(
                select(certificates.c.status, certificates.c.revocation_reason).where(
                    certificates.c.serial == cred["certificate_serial"]
                )
            )
        ).one()
    assert old == ("revoked", "superseded")
    # The new certificate names the same proofed person.
    subject = x509.load_pem_x509_certificate(new["certificate"].encode()).subject
    before = x509.load_pem_x509_certificate(cred["certificate"].encode()).subject
    assert subject == before


async def test_a_new_totp_factor_needs_the_face_and_the_password(
    client: CloudsignClient, app: Any
) -> None:
    totp, cred = await enrolled(client)
    new_totp = await client.reset_totp(
        password=PASSWORD, face_challenge_id=await passed_face_check(client)
    )
    # The new authenticator signs; the old one's codes are refused.
    await _sign(client, new_totp, cred, PASSWORD)
    with pytest.raises(ApiError) as err:
        await _sign(client, totp, cred, PASSWORD)
    assert err.value.status == 403
    # A full session cannot start a new seed by itself.
    with pytest.raises(ApiError) as err:
        await client.request("POST", "/api/v1/me/totp")
    assert err.value.status == 409
    # The first TOTP, its reset, the new one's confirmation.
    assert (await _kinds(app, client.owner_id)).count("factor.change") >= 3


async def test_a_lost_password_means_a_new_proofing_and_a_new_key(
    client: CloudsignClient, app: Any, staff: Staff
) -> None:
    """Rule 11: no recovery. The citizen is proofed again at the desk; the
    activation re-opens their account for one new key, and the old key is
    destroyed and its certificate revoked (superseded)."""
    identity = person()
    totp, old = await enrolled(client, identity=identity)
    # Proofed again, with the name the document now carries.
    renamed = {**identity, "surname": "Жаңаева"}
    proofing = await staff.registration.proof(renamed, "obama_1.jpg")
    await client.activate(proofing["activation_code"])
    me = await client.request("GET", "/api/v1/me")
    assert (me["owner_id"], me["session"]) == (client.owner_id, "enrolment")
    face = await passed_face_check(client)
    new = await client.create_credential(NEW_PASSWORD, await totp.fresh_code(), face)
    statuses = {c["credential_id"]: c["status"] for c in await client.credentials()}
    assert statuses == {old["credential_id"]: "deleted", new["credential_id"]: "active"}
    await _sign(client, totp, new, NEW_PASSWORD)
    kinds = await _kinds(app, client.owner_id)
    assert kinds.count("activation.use") == 2 and "key.destroy" in kinds
    subject = x509.load_pem_x509_certificate(new["certificate"].encode()).subject
    assert subject.get_attributes_for_oid(x509.NameOID.SURNAME)[0].value == "Жаңаева"


async def test_an_unfinished_enrolment_is_deleted_with_a_face_check(
    client: CloudsignClient, app: Any
) -> None:
    await activated(client)
    with pytest.raises(ApiError) as err:
        await client.delete_account(password=None, otp=None, face_challenge_id=None)
    assert err.value.status == 403
    await client.delete_account(
        password=None, otp=None, face_challenge_id=await passed_face_check(client)
    )
    assert "account.delete" in await _kinds(app, client.owner_id)


async def test_a_revoked_certificate_does_not_stop_the_key_deletion(
    client: CloudsignClient, app: Any
) -> None:
    """Revoke first (owner, every factor), delete the key afterwards: the
    deletion destroys the key and leaves the revocation as it was."""
    totp, cred = await enrolled(client)
    face = await passed_face_check(client)
    wrapped = await client.wrap_password(PASSWORD, "authorize")
    await client.request(
        "POST",
        f"/api/v1/me/credentials/{cred['credential_id']}/revoke",
        {
            "password_key": wrapped.to_json(),
            "otp": await totp.fresh_code(),
            "face_challenge_id": face,
            "reason": "key-compromise",
        },
    )
    face = await passed_face_check(client)
    await client.delete_credential(
        cred["credential_id"],
        password=PASSWORD,
        otp=await totp.fresh_code(),
        face_challenge_id=face,
    )
    assert [c["status"] for c in await client.credentials()] == ["deleted"]
    async with app[DATABASE].read() as conn:
        reason = (
            await conn.execute(
                select(certificates.c.revocation_reason).where(
                    certificates.c.serial == cred["certificate_serial"]
                )
            )
        ).scalar_one()
    assert reason == "key_compromise"
    kinds = await _kinds(app, client.owner_id)
    assert kinds.count("cert.revoke") == 1 and "key.destroy" in kinds
