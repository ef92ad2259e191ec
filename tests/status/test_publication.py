"""Public repository, compromise notices and the operator API over real HTTP,
on both databases."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import select

from cloudsign.appkeys import DATABASE
from cloudsign.storage.schema import events
from device_client.client import CloudsignClient
from tests.helpers import enrolled
from tests.staff import STAFF
from tests.status.status_helpers import (
    cli,
    healthy,
    operator_headers,
    operator_revoke,
    operator_url,
)

ATOM = "{http://www.w3.org/2005/Atom}"


async def test_pki_listing_json_and_page(http: aiohttp.ClientSession, base_url: str) -> None:
    async with http.get(f"{base_url}/pki") as r:
        assert r.status == 200
        listing = await r.json()
    for key in ("root_certificate", "issuing_certificate", "crl", "delta_crl", "ocsp", "tsa"):
        assert listing[key].startswith("http"), key
    assert listing["crl"].endswith("/pki/crl/issuing.crl")
    for key in (
        "root_certificate",
        "issuing_certificate",
        "ocsp_responder_certificate",
        "tsa_certificate",
        "crl",
        "delta_crl",
        "root_crl",
        "notices",
        "notices_json",
        "notices_atom",
    ):
        path = "/" + listing[key].split("/", 3)[3]
        async with http.get(f"{base_url}{path}") as r:
            assert r.status == 200, key
    async with http.get(f"{base_url}/pki/index.html") as r:
        assert r.status == 200 and r.content_type == "text/html"
        assert "default-src 'none'" in r.headers["Content-Security-Policy"]
        page = await r.text()
    assert "<script" not in page.lower() and "style=" not in page.lower()
    assert listing["tsa"] in page and listing["delta_crl"] in page


async def test_operator_api_needs_a_signed_in_revocation_officer(
    http: aiohttp.ClientSession, base_url: str
) -> None:
    body = {"serial": "abc", "reason": "key-compromise"}
    # Not on the public listener at all.
    async with http.post(f"{base_url}/operator/api/v1/revocations", json=body) as r:
        assert r.status == 404
    url = operator_url(base_url, "/operator/api/v1/revocations")
    async with http.post(url, json=body) as r:
        assert r.status == 401
        assert r.content_type == "application/problem+json"
    async with http.post(url, json=body, headers={"Authorization": "Bearer " + "x" * 43}) as r:
        assert r.status == 401
    # Signed in, but an auditor: reads, never writes.
    async with http.post(url, json=body, headers=operator_headers(base_url, "auditor")) as r:
        assert r.status == 403
        assert (await r.json(content_type=None))["code"] == "forbidden"


async def test_operator_revocation_errors(
    client: CloudsignClient, http: aiohttp.ClientSession, base_url: str
) -> None:
    status, body = await operator_revoke(http, base_url, "abcdef0123", "key-compromise")
    assert status == 404 and body["code"] == "not_found"
    status, body = await operator_revoke(http, base_url, "xyz", "key-compromise")
    assert status == 400 and body["field"] == "serial"
    _, cred = await enrolled(client)
    status, body = await operator_revoke(http, base_url, cred["certificate_serial"], "because")
    assert status == 400 and body["field"] == "reason"
    status, _ = await operator_revoke(http, base_url, cred["certificate_serial"], "superseded")
    assert status == 201
    status, body = await operator_revoke(http, base_url, cred["certificate_serial"], "superseded")
    assert status == 409
    await healthy(http, base_url)


async def test_revocation_is_an_event_and_keeps_the_trail(
    client: CloudsignClient, http: aiohttp.ClientSession, base_url: str, app: Any
) -> None:
    _, cred = await enrolled(client)
    async with app[DATABASE].read() as conn:
        before = (await conn.execute(select(events.c.seq))).all()
    status, _ = await operator_revoke(
        http, base_url, cred["certificate_serial"], "court-decision", reference="No. 7-77/2026"
    )
    assert status == 201
    async with app[DATABASE].read() as conn:
        rows = (
            (await conn.execute(select(events).where(events.c.seq > max(before)[0])))
            .mappings()
            .all()
        )
        still = (await conn.execute(select(events.c.seq))).all()
    assert set(before) <= set(still)  # nothing removed from the trail
    revoke = [r for r in rows if r["event_type"] == "cert.revoke"]
    assert len(revoke) == 1
    assert revoke[0]["credential_id"] == cred["credential_id"]
    assert revoke[0]["data"] == {
        "serial": cred["certificate_serial"],
        "reason": "privilege_withdrawn",
        "actor": f"operator:{STAFF[base_url].revocation.username}",
        "reference": "No. 7-77/2026",
    }


async def test_notice_published_on_page_feed_json_and_as_event(
    http: aiohttp.ClientSession, base_url: str, app: Any, settings: Any
) -> None:
    title = "Owner key exposed <script>alert(1)</script>"
    body = {
        "title": title,
        "summary": "A citizen reported that the device holding the password was stolen.",
        "measures": "The certificate was revoked at once (keyCompromise).",
        "serials": ["0A:BC"],
    }
    url = operator_url(base_url, "/operator/api/v1/notices")
    # Who published is the signed-in operator; a name in the body is refused.
    async with http.post(
        url, json={**body, "operator": "alice"}, headers=operator_headers(base_url)
    ) as r:
        assert r.status == 400
    async with http.post(url, json=body, headers=operator_headers(base_url)) as r:
        assert r.status == 201, await r.text()
        notice = await r.json()
    assert notice["serials"] == ["abc"]
    async with http.get(f"{base_url}/pki/notices") as r:
        page = await r.text()
        assert "default-src 'none'" in r.headers["Content-Security-Policy"]
    assert "Owner key exposed &lt;script&gt;" in page and "<script>" not in page
    assert notice["id"] in page
    async with http.get(f"{base_url}/pki/notices.json") as r:
        listed = (await r.json())["notices"]
    assert any(n["id"] == notice["id"] and n["title"] == title for n in listed)
    async with http.get(f"{base_url}/pki/notices.atom") as r:
        assert r.content_type == "application/atom+xml"
        feed = ET.fromstring(await r.read())
    titles = [e.findtext(f"{ATOM}title") for e in feed.iter(f"{ATOM}entry")]
    assert title in titles
    async with app[DATABASE].read() as conn:
        rows = (
            (await conn.execute(select(events).where(events.c.event_type == "notice.publish")))
            .mappings()
            .all()
        )
    ev = next(r for r in rows if r["data"]["notice_id"] == notice["id"])
    assert ev["data"]["actor"] == f"operator:{STAFF[base_url].revocation.username}"
    assert len(ev["data"]["sha256"]) == 64

    done = await cli(
        settings,
        "notice",
        "publish",
        "--title",
        "HSM maintenance finding",
        "--summary",
        "An audit found a stale backup token.",
        "--measures",
        "The token was destroyed under dual control.",
    )
    assert done.returncode == 0, done.stderr
    async with http.get(f"{base_url}/pki/notices.json") as r:
        assert (await r.json())["notices"][0]["title"] == "HSM maintenance finding"


async def test_bad_notice_is_400(
    http: aiohttp.ClientSession, base_url: str, tmp_path: Path
) -> None:
    async with http.post(
        operator_url(base_url, "/operator/api/v1/notices"),
        json={"title": "", "summary": "x", "measures": "y"},
        headers=operator_headers(base_url),
    ) as r:
        assert r.status == 400
        assert (await r.json(content_type=None))["field"] == "title"
