"""CSC v2 `oauth2code` (credential scope) driven by a client built from a
well-kept OAuth library (authlib's `OAuth2Session`, PKCE S256): the
citizen's browser goes to the authorisation endpoint, the phone approves
with face + key password + device, the browser comes back to the client
with a code, the client trades it for a credential-scoped access token and
`signatures/signHash` signs exactly the authorised hashes with it."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from authlib.common.security import generate_token
from authlib.integrations.base_client.errors import OAuthError as ClientOAuthError
from authlib.integrations.requests_client import OAuth2Session
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from device_client.client import CloudsignClient
from tests.helpers import passed_face_check
from tests.mobile.test_csc_phone import ECDSA_SHA256, SHA256_OID, _public_key
from tests.mobile.test_devices import PASSWORD, phone_enrolled
from tests.staff import Staff

REDIRECT = "http://127.0.0.1:9/wallet/callback"


async def _register(staff: Staff, redirects: list[str]) -> dict[str, Any]:
    party: dict[str, Any] = await staff.security.request(
        "POST",
        "/operator/api/v1/relying-parties",
        {"name": "Wallet of Example LLP", "oauth_redirect_uris": redirects},
    )
    return party


def _session(party: dict[str, Any], **kw: Any) -> OAuth2Session:
    options = {
        "scope": "credential",
        "redirect_uri": REDIRECT,
        "code_challenge_method": "S256",
        **kw,
    }
    return OAuth2Session(party["client_id"], party["client_secret"], **options)


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Browser:
    """The citizen's browser: keeps cookies, follows nothing by itself."""

    def __init__(self) -> None:
        self.http = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            headers={"Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8"},
        )

    async def get(self, url: str) -> tuple[int, str | None, str]:
        async with self.http.get(url, allow_redirects=False) as resp:
            return resp.status, resp.headers.get("Location"), await resp.text()

    async def close(self) -> None:
        await self.http.close()


async def _start(browser: Browser, base: str, url: str) -> str:
    """The authorisation request: the browser lands on the waiting page."""
    status, location, text = await browser.get(url)
    assert status == 303, (status, text)
    assert location is not None and location.startswith("/csc/v2/oauth2/wait?id=")
    return base + location


async def test_a_wallet_signs_with_an_oauth_credential_token_after_the_phone_approves(
    client: CloudsignClient, http: aiohttp.ClientSession, staff: Staff
) -> None:
    phone, cred, _identity = await phone_enrolled(client)
    credential_id = cred["credential_id"]
    base = client.base_url
    async with http.get(f"{base}/csc/v2/info") as resp:
        info = await resp.json()
    assert "oauth2code" in info["authType"]
    party = await _register(staff, [REDIRECT])
    digests = [hashlib.sha256(os.urandom(16)).digest() for _ in range(2)]

    wallet = _session(party)
    verifier = generate_token(64)
    url, state = wallet.create_authorization_url(
        f"{info['oauth2']}/oauth2/authorize",
        code_verifier=verifier,
        credentialID=credential_id,
        numSignatures=str(len(digests)),
        hashes=",".join(_b64url(d) for d in digests),
        hashAlgorithmOID=SHA256_OID,
        description="Contract 7 in the wallet",
    )
    browser = Browser()
    try:
        wait = await _start(browser, base, url)
        status, _, page = await browser.get(wait)
        assert status == 200 and 'http-equiv="refresh"' in page

        # The phone sees the wallet by its registered name, the exact hashes
        # and the code the browser shows.
        (item,) = await client.inbox()
        assert item["requester"] == "Wallet of Example LLP"
        assert f">{item['verification_code']}<" in page
        details = await client.request_details(item["request_id"])
        assert [base64.b64decode(d["hash"]) for d in details["documents"]] == digests
        # A stranger's browser (no cookie) cannot take it over.
        async with http.get(wait, allow_redirects=False) as resp:
            assert resp.status == 401
        approved = await client.approve(
            item["request_id"],
            phone,
            password=PASSWORD,
            face_challenge_id=await passed_face_check(client),
        )
        assert approved["status"] == "approved"

        status, back, _ = await browser.get(wait)
        assert status == 303 and back is not None and back.startswith(REDIRECT + "?")
        # Delivered once: the browser's handle went with the redirect.
        status, again, _ = await browser.get(wait)
        assert status == 401 and again is None
    finally:
        await browser.close()
    query = parse_qs(urlsplit(back).query)
    assert query["state"] == [state]

    token = await asyncio.to_thread(
        wallet.fetch_token,
        f"{info['oauth2']}/oauth2/token",
        authorization_response=back,
        code_verifier=verifier,
    )
    assert token["token_type"].lower() == "bearer" and token["expires_in"] > 0
    assert token["credentialID"] == credential_id
    bearer = {"Authorization": f"Bearer {token['access_token']}"}

    # The code worked once.
    with pytest.raises(ClientOAuthError) as refused:
        await asyncio.to_thread(
            _session(party).fetch_token,
            f"{info['oauth2']}/oauth2/token",
            authorization_response=back,
            code_verifier=verifier,
        )
    assert refused.value.error == "invalid_grant"

    def sign_body(values: list[bytes]) -> dict[str, Any]:
        return {
            "credentialID": credential_id,
            "hashes": [base64.b64encode(d).decode() for d in values],
            "hashAlgorithmOID": SHA256_OID,
            "signAlgo": ECDSA_SHA256,
        }

    # The token signs exactly the approved hashes, and only them.
    async with http.post(
        f"{base}/csc/v2/signatures/signHash", json=sign_body([os.urandom(32)]), headers=bearer
    ) as resp:
        assert resp.status == 400, await resp.text()
    async with http.post(
        f"{base}/csc/v2/signatures/signHash", json=sign_body(digests), headers=bearer
    ) as resp:
        assert resp.status == 200, await resp.text()
        signed = await resp.json()
    key = _public_key(cred)
    for digest, sig in zip(digests, signed["signatures"], strict=True):
        key.verify(base64.b64decode(sig), digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    # Used up: the same token signs nothing more.
    async with http.post(
        f"{base}/csc/v2/signatures/signHash", json=sign_body(digests), headers=bearer
    ) as resp:
        assert resp.status in (400, 401), await resp.text()
    # Nor does it open the citizen's account.
    async with http.post(f"{base}/csc/v2/credentials/list", json={}, headers=bearer) as resp:
        assert resp.status == 401


async def test_authorization_details_and_every_refusal(
    client: CloudsignClient, http: aiohttp.ClientSession, staff: Staff
) -> None:
    phone, cred, _identity = await phone_enrolled(client)
    credential_id = cred["credential_id"]
    base = client.base_url
    endpoint = f"{base}/csc/v2/oauth2/authorize"
    token_url = f"{base}/csc/v2/oauth2/token"
    party = await _register(staff, [REDIRECT])
    other = await _register(staff, ["http://127.0.0.1:9/other"])
    digest = hashlib.sha256(b"the one document").digest()
    details = json.dumps(
        [
            {
                "type": "credential",
                "credentialID": credential_id,
                "hashAlgorithmOID": SHA256_OID,
                "documentDigests": [
                    {"hash": base64.b64encode(digest).decode(), "label": "Lease <b>2026</b>"}
                ],
            }
        ]
    )
    browser = Browser()
    try:
        # A redirect URI the client did not register, an unknown client: an
        # error page, never a redirect anywhere.
        url, _ = _session(party, redirect_uri="http://127.0.0.1:9/evil").create_authorization_url(
            endpoint, code_verifier=generate_token(64), authorization_details=details
        )
        status, location, page = await browser.get(url)
        assert status == 400 and location is None and "redirect_uri" in page
        assert page.startswith("<!doctype html>")
        async with http.get(url, allow_redirects=False) as resp:  # a program: the error form
            assert resp.status == 400 and (await resp.json())["error"] == "invalid_request"
        url, _ = _session({**party, "client_id": "rp-unknown"}).create_authorization_url(
            endpoint, code_verifier=generate_token(64), authorization_details=details
        )
        status, location, _ = await browser.get(url)
        assert status == 400 and location is None

        # Known client and URI: errors go back to the client, with its state.
        for params, error in (
            ({"authorization_details": details}, "invalid_request"),  # no PKCE
            (
                {"code_verifier": generate_token(64), "scope": "service", "credentialID": "x"},
                "invalid_scope",
            ),
            (
                {
                    "code_verifier": generate_token(64),
                    "credentialID": credential_id,
                    "hashes": _b64url(digest),
                    "hashAlgorithmOID": "1.3.14.3.2.26",  # SHA-1
                },
                "invalid_request",
            ),
            (
                {
                    "code_verifier": generate_token(64),
                    "credentialID": "no-such-credential",
                    "hashes": _b64url(digest),
                    "hashAlgorithmOID": SHA256_OID,
                },
                "access_denied",
            ),
            (
                {"code_verifier": generate_token(64), "authorization_details": "{"},
                "invalid_authorization_details",
            ),
        ):
            session = OAuth2Session(
                party["client_id"],
                party["client_secret"],
                redirect_uri=REDIRECT,
                scope=params.pop("scope", None) or ("credential" if "hashes" in params else None),
                code_challenge_method="S256" if "code_verifier" in params else None,
            )
            url, state = session.create_authorization_url(endpoint, **params)
            status, location, text = await browser.get(url)
            assert status == 302 and location is not None, (params, status, text)
            answer = parse_qs(urlsplit(location).query)
            assert location.startswith(REDIRECT) and answer["error"] == [error], answer
            assert answer["state"] == [state]

        # authorization_details (RFC 9396): the label reaches the phone as text.
        wallet = _session(party)
        verifier = generate_token(64)
        url, _state = wallet.create_authorization_url(
            endpoint, code_verifier=verifier, authorization_details=details
        )
        wait = await _start(browser, base, url)
        (item,) = await client.inbox()
        shown = await client.request_details(item["request_id"])
        assert [d["name"] for d in shown["documents"]] == ["Lease <b>2026</b>"]
        await client.approve(
            item["request_id"],
            phone,
            password=PASSWORD,
            face_challenge_id=await passed_face_check(client),
        )
        status, back, _ = await browser.get(wait)
        assert status == 303 and back is not None

        # Another client cannot trade the code; a wrong PKCE verifier burns it.
        with pytest.raises(ClientOAuthError) as refused:
            await asyncio.to_thread(
                OAuth2Session(
                    other["client_id"], other["client_secret"], redirect_uri=REDIRECT
                ).fetch_token,
                token_url,
                authorization_response=back,
                code_verifier=verifier,
            )
        assert refused.value.error == "invalid_grant"
        with pytest.raises(ClientOAuthError) as refused:
            await asyncio.to_thread(
                _session(party).fetch_token,
                token_url,
                authorization_response=back,
                code_verifier=verifier,
            )
        assert refused.value.error == "invalid_grant"  # burnt by the other client's try

        # Declined on the phone: the browser goes back with access_denied.
        url, state = _session(party).create_authorization_url(
            endpoint, code_verifier=generate_token(64), authorization_details=details
        )
        wait = await _start(browser, base, url)
        (item,) = await client.inbox()
        await client.decline(item["request_id"])
        status, back, _ = await browser.get(wait)
        assert status == 303 and back is not None
        answer = parse_qs(urlsplit(back).query)
        assert answer["error"] == ["access_denied"] and answer["state"] == [state]
    finally:
        await browser.close()

    # The token endpoint: wrong client secret, wrong grant type, garbage.
    async with http.post(
        token_url,
        data={"grant_type": "authorization_code", "code": "x", "code_verifier": "y" * 43},
        headers=_basic(party["client_id"], "wrong"),
    ) as resp:
        assert resp.status == 401 and (await resp.json())["error"] == "invalid_client"
    async with http.post(
        token_url,
        data={"grant_type": "password", "code_verifier": "y" * 43},
        headers=_basic(party["client_id"], party["client_secret"]),
    ) as resp:
        assert resp.status == 400 and (await resp.json())["error"] == "unsupported_grant_type"
    async with http.post(token_url, json={"grant_type": "authorization_code"}) as resp:
        assert resp.status == 400 and (await resp.json())["error"] == "invalid_request"
    # A made-up credential token signs nothing.
    async with http.post(
        f"{base}/csc/v2/signatures/signHash",
        json={"hashes": [base64.b64encode(digest).decode()], "signAlgo": ECDSA_SHA256},
        headers={"Authorization": "Bearer csccred.not-a-sad"},
    ) as resp:
        assert resp.status == 401
