"""A third-party CSC v2 client drives an approval on the citizen's phone:
`credentials/authorize` with no factor answers 202 with a handle and the
verification code, the phone approves with face + password + device, and
`credentials/authorizeCheck` gives the SAD (once) for exactly the hashes
the client sent; `signatures/signHash` then signs them. The client here is
hand-made HTTP (what any CSC library sends), not the service's own client.
"""

from __future__ import annotations

import base64
import hashlib
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from asn1crypto import pem, x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from sqlalchemy import select, update

from cloudsign.appkeys import DATABASE
from cloudsign.storage.schema import events
from device_client.client import ApiError, CloudsignClient
from mobile_api.tables import signing_requests
from tests.helpers import enrolled, new_client, passed_face_check
from tests.mobile.test_devices import PASSWORD, phone_enrolled

SHA256_OID = "2.16.840.1.101.3.4.2.1"
ECDSA_SHA256 = "1.2.840.10045.4.3.2"


class CscClient:
    """What a CSC v2 client library sends: Bearer token, JSON, the status code."""

    def __init__(self, http: aiohttp.ClientSession, base_url: str, token: str) -> None:
        self.http, self.base_url, self.token = http, base_url, token

    async def call(self, method: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        async with self.http.post(
            f"{self.base_url}/csc/v2/{method}",
            json=body,
            headers={"Authorization": f"Bearer {self.token}"},
        ) as resp:
            return resp.status, await resp.json(content_type=None)

    async def authorize(self, credential_id: str, digests: list[bytes]) -> tuple[int, Any]:
        return await self.call(
            "credentials/authorize",
            {
                "credentialID": credential_id,
                "numSignatures": len(digests),
                "hashes": [base64.b64encode(d).decode() for d in digests],
                "hashAlgorithmOID": SHA256_OID,
                "description": "Invoice 42 from the accounting application",
            },
        )

    async def check(self, credential_id: str, handle: str) -> tuple[int, Any]:
        return await self.call(
            "credentials/authorizeCheck", {"credentialID": credential_id, "authorizationID": handle}
        )


async def _setup(
    client: CloudsignClient, http: aiohttp.ClientSession
) -> tuple[CscClient, Any, dict[str, Any]]:
    phone, cred, identity = await phone_enrolled(client)
    desktop = new_client(client.base_url, http)
    await desktop.login(identity["iin"], None, PASSWORD, device=phone)
    assert desktop.access_token is not None
    return CscClient(http, client.base_url, desktop.access_token), phone, cred


def _public_key(cred: dict[str, Any]) -> ec.EllipticCurvePublicKey:
    cert = x509.Certificate.load(pem.unarmor(cred["certificate"].encode())[2])
    key = serialization.load_der_public_key(cert.public_key.dump())
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key


async def test_a_csc_client_gets_its_sad_once_the_phone_approves(
    client: CloudsignClient, http: aiohttp.ClientSession, server: Any
) -> None:
    csc, phone, cred = await _setup(client, http)
    credential_id = cred["credential_id"]
    info = (await csc.call("info", {}))[1]
    assert "credentials/authorizeCheck" in info["methods"]
    digests = [hashlib.sha256(os.urandom(16)).digest() for _ in range(2)]

    status, started = await csc.authorize(credential_id, digests)
    assert status == 202, started
    handle, code = started["authorizationID"], started["verificationCode"]
    assert len(code) == 4 and started["expiresIn"] > 0 and "SAD" not in started
    # Not decided yet: no SAD, and the answer says so.
    status, waiting = await csc.check(credential_id, handle)
    assert status == 202 and waiting["status"] == "pending"

    # The phone sees the request, with the client's text, hashes and code.
    (item,) = await client.inbox()
    assert item["request_id"] == handle and item["verification_code"] == code
    details = await client.request_details(handle)
    assert [base64.b64decode(d["hash"]) for d in details["documents"]] == digests
    approved = await client.approve(
        handle, phone, password=PASSWORD, face_challenge_id=await passed_face_check(client)
    )
    assert approved["status"] == "approved"
    assert all(d.get("signature") is None for d in approved["documents"])  # a SAD, no signature

    status, body = await csc.check(credential_id, handle)
    assert status == 200, body
    sad = body["SAD"]
    assert body["expiresIn"] > 0
    # Given once.
    status, again = await csc.check(credential_id, handle)
    assert status == 400 and again["error"] == "invalid_request"

    # The SAD signs exactly the approved hashes, nothing else.
    status, other = await csc.call(
        "signatures/signHash",
        {
            "credentialID": credential_id,
            "SAD": sad,
            "hashes": [base64.b64encode(os.urandom(32)).decode()],
            "hashAlgorithmOID": SHA256_OID,
            "signAlgo": ECDSA_SHA256,
        },
    )
    assert status >= 400, other
    status, signed = await csc.call(
        "signatures/signHash",
        {
            "credentialID": credential_id,
            "SAD": sad,
            "hashes": [base64.b64encode(d).decode() for d in digests],
            "hashAlgorithmOID": SHA256_OID,
            "signAlgo": ECDSA_SHA256,
        },
    )
    assert status == 200, signed
    key = _public_key(cred)
    for digest, sig in zip(digests, signed["signatures"], strict=True):
        key.verify(base64.b64decode(sig), digest, ec.ECDSA(Prehashed(hashes.SHA256())))

    async with server.app[DATABASE].read() as conn:
        rows = list(
            await conn.execute(
                select(events.c.event_type, events.c.data)
                .where(events.c.owner_id == client.owner_id)
                .order_by(events.c.seq)
            )
        )
    decided = [d for t, d in rows if t == "request.decide"]
    assert decided[-1]["request"] == handle and decided[-1]["decision"] == "approved"
    assert [t for t, _ in rows].count("key.use") == 2


async def test_declined_expired_foreign_and_malformed_authorisations(
    client: CloudsignClient, http: aiohttp.ClientSession, server: Any
) -> None:
    csc, phone, cred = await _setup(client, http)
    credential_id = cred["credential_id"]

    # Declined on the phone: access_denied, and no SAD ever.
    _, started = await csc.authorize(credential_id, [os.urandom(32)])
    await client.decline(started["authorizationID"])
    status, body = await csc.check(credential_id, started["authorizationID"])
    assert status == 400 and body["error"] == "access_denied"

    # Expired before the citizen decided.
    _, started = await csc.authorize(credential_id, [os.urandom(32)])
    async with server.app[DATABASE].transaction() as conn:
        await conn.execute(
            update(signing_requests)
            .where(signing_requests.c.id == started["authorizationID"])
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    status, body = await csc.check(credential_id, started["authorizationID"])
    assert status == 400 and body["error"] == "expired_token"
    with pytest.raises(ApiError) as e:
        await client.approve(
            started["authorizationID"],
            phone,
            password=PASSWORD,
            face_challenge_id=await passed_face_check(client),
        )
    assert e.value.status == 409

    # Another citizen's client cannot see or take it; nor a made-up handle.
    _, started = await csc.authorize(credential_id, [os.urandom(32)])
    stranger = new_client(client.base_url, http)
    _phone2, cred2, _identity2 = await phone_enrolled(stranger)
    other = CscClient(http, client.base_url, stranger.access_token or "")
    status, body = await other.check(cred2["credential_id"], started["authorizationID"])
    assert status == 404, body
    status, body = await csc.check(credential_id, "not-a-handle")
    assert status == 404
    # The handle belongs to this credential only.
    status, body = await csc.check(cred2["credential_id"], started["authorizationID"])
    assert status == 404

    # Only SHA-256 and a matching numSignatures go to the phone.
    status, body = await csc.call(
        "credentials/authorize",
        {
            "credentialID": credential_id,
            "numSignatures": 1,
            "hashes": [base64.b64encode(os.urandom(48)).decode()],
            "hashAlgorithmOID": "2.16.840.1.101.3.4.2.2",
        },
    )
    assert status == 400 and body["error"] == "invalid_request"
    status, body = await csc.call(
        "credentials/authorize",
        {
            "credentialID": credential_id,
            "numSignatures": 2,
            "hashes": [base64.b64encode(os.urandom(32)).decode()],
            "hashAlgorithmOID": SHA256_OID,
        },
    )
    assert status == 400
    status, body = await csc.call("credentials/authorizeCheck", {"authorizationID": 7})
    assert status == 400
    # Without a token: CSC's invalid_token.
    async with http.post(f"{client.base_url}/csc/v2/credentials/authorizeCheck", json={}) as resp:
        assert resp.status == 401


async def test_without_a_bound_phone_authorize_still_needs_the_factors(
    client: CloudsignClient, http: aiohttp.ClientSession
) -> None:
    _totp, cred = await enrolled(client)
    assert client.access_token is not None
    csc = CscClient(http, client.base_url, client.access_token)
    status, body = await csc.authorize(cred["credential_id"], [os.urandom(32)])
    assert status == 409, body
