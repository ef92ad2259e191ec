"""Signing requests for XML documents (format `xades`, levels B and T),
approved on the bound phone: from the portal and from a relying party, the
requester receives the document with its enveloped XAdES signature, which
Debian's `xmlsec1 --verify` accepts trusting only this CA's root (and the
validation service passes); an XML request without its document, at a
level XAdES is not offered at, or with a DTD is refused when it is made."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from asn1crypto import pem, x509
from lxml import etree
from sqlalchemy import select

from cloudsign.appkeys import DATABASE
from device_client.client import ApiError, CloudsignClient
from mobile_api.tables import signing_request_documents
from tests.helpers import passed_face_check
from tests.mobile.test_devices import PASSWORD, phone_enrolled
from tests.mobile.test_relying_parties import RelyingPartyClient
from tests.mobile.test_signing_requests import desktop_and_phone
from tests.signing.test_xades import Trust, xmlsec_verify
from tests.staff import Staff

CONTENT = "documents.content"
NS = {
    "ds": "http://www.w3.org/2000/09/xmldsig#",
    "xades": "http://uri.etsi.org/01903/v1.3.2#",
}


def _declaration(number: int) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<declaration xmlns="urn:example:kz:tax" number="{number}">\n'
        '  <taxpayer iin="900101300123">Asel Nurlanovna</taxpayer>\n'
        '  <income currency="KZT">4200000.00</income>\n'
        "</declaration>\n"
    ).encode()


def _trust(cred: dict[str, Any], tmp_path: Path) -> Trust:
    root, issuing = tmp_path / "root.pem", tmp_path / "issuing.pem"
    root.write_text(cred["chain"][-1])
    issuing.write_text(cred["chain"][0])
    return Trust(root, issuing, x509.Certificate.load(pem.unarmor(root.read_bytes())[2]))


async def _check_signed(
    signed: bytes, document: bytes, cred: dict[str, Any], tmp_path: Path, *, stamped: bool
) -> None:
    """xmlsec1 accepts it trusting only the root; it is the document with
    one XAdES signature by the credential's certificate; a changed document
    does not pass."""
    trust = _trust(cred, tmp_path)
    code, out = await xmlsec_verify(signed, trust, tmp_path)
    assert code == 0 and "OK" in out, out
    root = etree.fromstring(signed, parser=etree.XMLParser(resolve_entities=False))
    assert etree.QName(root).localname == "declaration"
    (signature,) = root.findall("ds:Signature", NS)
    leaf = pem.unarmor(cred["certificate"].encode())[2]
    first = signature.find("ds:KeyInfo/ds:X509Data/ds:X509Certificate", NS)
    assert base64.b64decode(first.text) == leaf
    stamp = signature.find(".//xades:SignatureTimeStamp", NS)
    assert (stamp is not None) is stamped
    root.remove(signature)
    assert etree.tostring(root, method="c14n") == etree.tostring(
        etree.fromstring(document), method="c14n"
    )
    code, out = await xmlsec_verify(signed.replace(b"4200000.00", b"42.00"), trust, tmp_path)
    assert code != 0, out


async def test_portal_xades_request_approved_on_the_phone(
    client: CloudsignClient,
    http: aiohttp.ClientSession,
    base_url: str,
    server: Any,
    tmp_path: Path,
) -> None:
    desktop, app, phone, cred = await desktop_and_phone(client, http)
    document = _declaration(1)
    created = await desktop.create_signing_request(
        [{"name": "declaration.xml", "format": "xades", "content": document}],
        "Sign the tax declaration",
        level="T",
    )
    request_id = created["request_id"]
    (listed,) = created["documents"]
    assert listed["format"] == "xades" and listed["size"] == len(document)
    assert base64.b64decode(listed["hash"]) == hashlib.sha256(document).digest()
    async with server.app[DATABASE].read() as conn:
        stored = (
            await conn.execute(
                select(signing_request_documents.c.content_type).where(
                    signing_request_documents.c.request_id == request_id
                )
            )
        ).scalar_one()
    assert stored == "application/xml"

    # The phone reaches it by the QR, shows the document it fetched, approves.
    claimed = await app.claim_qr(await desktop.qr_frame(request_id))
    assert claimed["verification_code"] == created["verification_code"]
    async with app.session.get(
        f"{app.base_url}/api/v1/device/requests/{request_id}/documents/0",
        headers={"Authorization": f"Bearer {app.access_token}"},
    ) as resp:
        assert resp.status == 200
        assert await resp.read() == document
    face = await passed_face_check(app)
    approved = await app.approve(request_id, phone, password=PASSWORD, face_challenge_id=face)
    assert approved["status"] == "approved"

    result = await desktop.signing_request(request_id)
    assert result["status"] == "approved"
    (doc,) = result["documents"]
    signed = base64.b64decode(doc["signature"])
    await _check_signed(signed, document, cred, tmp_path, stamped=True)

    # The cabinet keeps it as XAdES; the validation service passes it at B-T.
    listed_docs = {d["document_hash"]: d for d in await app.documents()}
    assert listed_docs[hashlib.sha256(document).hexdigest()]["format"] == "xades"
    async with http.post(
        f"{base_url}/api/v1/validate", json={"signature": base64.b64encode(signed).decode()}
    ) as resp:
        report = await resp.json()
    assert resp.status == 200, report
    assert (report["indication"], report["format"]) == ("TOTAL-PASSED", "XAdES"), report
    assert report["signatures"][0]["level"] == "B-T"


async def test_relying_party_xades_request_approved_on_the_phone(
    client: CloudsignClient, http: aiohttp.ClientSession, staff: Staff, tmp_path: Path
) -> None:
    party = await staff.security.request(
        "POST", "/operator/api/v1/relying-parties", {"name": "Tax committee"}
    )
    rp = RelyingPartyClient(client.base_url, http, party)
    phone, cred, identity = await phone_enrolled(client)
    document = _declaration(2)
    status, created = await rp.call(
        "POST",
        "/api/v1/rp/signing-requests",
        {
            "iin": identity["iin"],
            "display_text": "Sign the tax declaration",
            "documents": [
                {
                    "name": "declaration.xml",
                    "format": "xades",
                    "content": base64.b64encode(document).decode(),
                }
            ],
            "level": "B",
        },
    )
    assert status == 201, created
    request_id = created["request_id"]
    (inbox,) = await client.inbox()
    assert inbox["request_id"] == request_id
    face = await passed_face_check(client)
    approved = await client.approve(request_id, phone, password=PASSWORD, face_challenge_id=face)
    assert approved["status"] == "approved"

    status, result = await rp.call("GET", f"/api/v1/rp/signing-requests/{request_id}")
    assert status == 200 and result["status"] == "approved", result
    (doc,) = result["documents"]
    await _check_signed(base64.b64decode(doc["signature"]), document, cred, tmp_path, stamped=False)


@pytest.mark.parametrize(
    ("what", "document", "level", "field"),
    [
        ("only the hash", {"hash": hashlib.sha256(_declaration(3)).digest()}, "B", CONTENT),
        ("level LT", {"content": _declaration(4)}, "LT", "level"),
        (
            "a DTD",
            {"content": b'<!DOCTYPE d [<!ENTITY a "aaaa">]><d>&a;</d>'},
            "B",
            CONTENT,
        ),
        ("not XML", {"content": b"%PDF-1.7 not xml"}, "B", CONTENT),
        ("an entity", {"content": b"<d>&nbsp;</d>"}, "B", CONTENT),
    ],
    ids=["only the hash", "level LT", "a DTD", "not XML", "an entity"],
)
async def test_xades_requests_are_refused_when_made(
    what: str,
    document: dict[str, bytes],
    level: str,
    field: str,
    client: CloudsignClient,
    http: aiohttp.ClientSession,
) -> None:
    desktop, app, _phone, _cred = await desktop_and_phone(client, http)
    with pytest.raises(ApiError) as e:
        await desktop.create_signing_request(
            [{"name": "d.xml", "format": "xades", **document}], "text", level=level
        )
    assert e.value.status == 400, what
    assert e.value.body.get("field") == field, (what, e.value.body)
    assert await app.inbox() == []
