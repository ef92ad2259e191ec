"""ASiC-E with CAdES (ETSI EN 319 162-1) through the citizen API, real HTTP,
real SoftHSM2, both databases: a citizen authorises the SHA-256 of several
files (face, then TOTP, then the key password) and gets one `.asice`. The
container is checked by tools other than the code that made it: Python's
zipfile and lxml read its structure and manifest, each file's digest is
recomputed, and `openssl cms -verify` checks the signature over
`META-INF/ASiCManifest.xml` trusting only this CA's root. A SAD for other
files, hostile names and refused levels sign nothing and leave the SAD
usable; the service keeps serving."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import aiohttp
import pytest
from asn1crypto import cms
from lxml import etree
from sqlalchemy import select

from cloudsign.appkeys import DATABASE
from cloudsign.storage.schema import events
from device_client.client import ApiError, CloudsignClient
from tests.helpers import authorize_documents, enrolled, openssl_cms_verify
from tests.pdfs import simple_pdf

PASSWORD = "correct horse battery"
MIMETYPE = b"application/vnd.etsi.asic-e+zip"
NS = {"asic": "http://uri.etsi.org/02918/v1.2.1#", "ds": "http://www.w3.org/2000/09/xmldsig#"}


def _files() -> list[tuple[str, bytes, str | None]]:
    return [
        ("contract.pdf", simple_pdf(f"contract {os.urandom(4).hex()}"), None),
        ("annexes/Договор №1.txt", "Оплата по договору № 7\n".encode() + os.urandom(8), None),
        ("data.bin", os.urandom(4096), "application/octet-stream"),
    ]


async def _post(
    client: CloudsignClient, cred: dict[str, Any], body: dict[str, Any]
) -> tuple[int, bytes]:
    async with client.session.post(
        f"{client.base_url}/api/v1/me/credentials/{cred['credential_id']}/sign-container",
        json=body,
        headers={"Authorization": f"Bearer {client.access_token}"},
    ) as resp:
        return resp.status, await resp.read()


def _documents(files: list[tuple[str, bytes, str | None]]) -> list[dict[str, str]]:
    return [{"name": n, "content": base64.b64encode(c).decode()} for n, c, _m in files]


def check_container(
    asice: bytes, files: list[tuple[str, bytes, str | None]]
) -> tuple[bytes, bytes, Any]:
    """The EN 319 162-1 structure, read with zipfile and lxml: `mimetype`
    first, stored, no extra field; the files byte for byte; a manifest whose
    digests are the files' SHA-256. Returns (manifest, .p7s, manifest root)."""
    z = zipfile.ZipFile(io.BytesIO(asice))
    infos = z.infolist()
    first = infos[0]
    assert first.filename == "mimetype"
    assert first.compress_type == zipfile.ZIP_STORED
    assert first.extra == b""
    assert z.read("mimetype") == MIMETYPE
    # The local header too: the name at offset 30 and the content right after.
    assert asice[30:38] == b"mimetype" and asice[38 : 38 + len(MIMETYPE)] == MIMETYPE
    names = [i.filename for i in infos]
    assert names == [
        "mimetype",
        *[n for n, _c, _m in files],
        "META-INF/ASiCManifest.xml",
        "META-INF/signature001.p7s",
    ]
    for name, content, _mime in files:
        assert z.read(name) == content
    manifest = z.read("META-INF/ASiCManifest.xml")
    root = etree.fromstring(manifest, parser=etree.XMLParser(resolve_entities=False))
    assert root.tag == "{http://uri.etsi.org/02918/v1.2.1#}ASiCManifest"
    (sig_ref,) = root.findall("asic:SigReference", NS)
    assert sig_ref.get("URI") == "META-INF/signature001.p7s"
    refs = root.findall("asic:DataObjectReference", NS)
    assert len(refs) == len(files)
    by_uri = {unquote(r.get("URI")): r for r in refs}
    for name, content, mime in files:
        ref = by_uri[name]
        assert ref.find("ds:DigestMethod", NS).get("Algorithm") == (
            "http://www.w3.org/2001/04/xmlenc#sha256"
        )
        digest = base64.b64decode(ref.find("ds:DigestValue", NS).text)
        assert digest == hashlib.sha256(content).digest(), name
        if mime is not None:
            assert ref.get("MimeType") == mime
    assert by_uri["contract.pdf"].get("MimeType") == "application/pdf"
    assert by_uri["annexes/Договор №1.txt"].get("MimeType") == "text/plain"
    return manifest, z.read("META-INF/signature001.p7s"), root


async def test_asic_e_through_the_citizen_api(
    client: CloudsignClient, app: Any, tmp_path: Path
) -> None:
    totp, cred = await enrolled(client)
    root_pem = cred["chain"][-1]
    files_b, files_t = _files(), _files()
    sad = await authorize_documents(client, totp, cred, [c for _n, c, _m in files_b + files_t])

    signed: dict[str, tuple[str, bytes]] = {}
    for level, files in (("B", files_b), ("T", files_t)):
        signature_id, asice = await client.sign_container(
            cred["credential_id"], sad, files, name=f"agreement-{level}", level=level
        )
        manifest, p7s, _root = check_container(asice, files)
        code, out = await openssl_cms_verify(p7s, manifest, root_pem, tmp_path / level)
        assert code == 0 and "Verification successful" in out, out
        # The signature is over the manifest: other bytes do not verify.
        code, out = await openssl_cms_verify(
            p7s, manifest.replace(b"DigestValue>", b"DigestValue> ", 1), root_pem, tmp_path / "x"
        )
        assert code != 0, out
        # The signer is the credential's certificate; T has a time-stamp.
        signer_info = cms.ContentInfo.load(p7s)["content"]["signer_infos"][0]
        unsigned = signer_info["unsigned_attrs"]
        stamped = unsigned.native is not None and any(
            a["type"].native == "signature_time_stamp_token" for a in unsigned
        )
        assert stamped == (level == "T")
        signed[level] = (signature_id, asice)

    # The cabinet keeps each container once, as asice, and gives it back.
    listed = {d["signature_id"]: d for d in await client.documents()}
    for level, (signature_id, asice) in signed.items():
        entry = listed[signature_id]
        assert entry["format"] == "asice"
        assert entry["name"] == f"agreement-{level}"
        async with client.session.get(
            f"{client.base_url}/api/v1/me/documents/{signature_id}",
            headers={"Authorization": f"Bearer {client.access_token}"},
        ) as resp:
            assert resp.status == 200
            assert resp.content_type == "application/vnd.etsi.asic-e+zip"
            assert f'filename="agreement-{level}.asice"' in resp.headers["Content-Disposition"]
            assert await resp.read() == asice

    # One key.use event per file, each naming its container.
    async with app[DATABASE].read() as conn:
        rows = (
            await conn.execute(
                select(events.c.data).where(
                    events.c.event_type == "key.use", events.c.owner_id == client.owner_id
                )
            )
        ).all()
    for level, files in (("B", files_b), ("T", files_t)):
        mine = [r.data for r in rows if r.data.get("signature_id") == signed[level][0]]
        assert sorted(d["document_hash"] for d in mine) == sorted(
            hashlib.sha256(c).hexdigest() for _n, c, _m in files
        )
        assert {d["format"] for d in mine} == {"asice"}

    # Every hash of the SAD is signed: it is used up.
    with pytest.raises(ApiError) as err:
        await client.sign_container(cred["credential_id"], sad, files_b)
    assert err.value.status == 400 and err.value.code == "invalid_sad", err.value


async def test_a_sad_for_other_files_signs_nothing(client: CloudsignClient, tmp_path: Path) -> None:
    totp, cred = await enrolled(client)
    files = _files()
    other = ("other.txt", b"not authorised " + os.urandom(8), None)
    sad = await authorize_documents(client, totp, cred, [c for _n, c, _m in files])
    before = await client.documents()

    # One file the SAD does not cover (beside covered ones), or only such files.
    for attempt in ([*files, other], [files[0], other], [other]):
        status, body = await _post(client, cred, {"SAD": sad, "documents": _documents(attempt)})
        assert status == 400, body
        assert b"invalid_sad" in body, body
    # A SAD that is not one.
    status, body = await _post(client, cred, {"SAD": "A" * 43, "documents": _documents(files)})
    assert status == 400 and b"invalid_sad" in body, body
    # Levels: LTA is not offered for CAdES, an unknown one not at all.
    for level in ("LTA", "X"):
        status, body = await _post(
            client, cred, {"SAD": sad, "level": level, "documents": _documents(files)}
        )
        assert status == 400, body
        assert b'"field": "level"' in body or b'"field":"level"' in body, body
    assert await client.documents() == before

    # None of it used the authorisation up: the authorised files sign.
    _id, asice = await client.sign_container(cred["credential_id"], sad, files, level="B")
    manifest, p7s, _root = check_container(asice, files)
    code, out = await openssl_cms_verify(p7s, manifest, cred["chain"][-1], tmp_path)
    assert code == 0, out


async def test_hostile_names_are_refused(
    client: CloudsignClient, http: aiohttp.ClientSession, base_url: str
) -> None:
    totp, cred = await enrolled(client)
    good = ("ok.txt", b"fine " + os.urandom(8), None)
    hostile = {
        "parent": "../etc/passwd",
        "inner parent": "a/../../b.txt",
        "absolute": "/etc/passwd",
        "backslash": "..\\windows\\win.ini",
        "drive": "C:/boot.ini",
        "meta-inf": "META-INF/signature001.p7s",
        "meta-inf lower case": "meta-inf/manifest.xml",
        "mimetype": "mimetype",
        "empty segment": "a//b.txt",
        "dot segment": "./a.txt",
        "control character": "a\x01.txt",
        "newline": "a\n.txt",
        "too long": "x" * 256,
        "too deep": "/".join("d" * 9) + "/f.txt",
        "device name": "nul.txt",
        "trailing dot": "a.txt.",
    }
    sad = await authorize_documents(client, totp, cred, [good[1]])
    for what, name in hostile.items():
        body = {
            "SAD": sad,
            "documents": [
                {"name": good[0], "content": base64.b64encode(good[1]).decode()},
                {"name": name, "content": base64.b64encode(b"x").decode()},
            ],
        }
        status, answer = await _post(client, cred, body)
        assert status == 400, (what, answer)
        assert b"documents[1].name" in answer, (what, answer)
        async with http.get(f"{base_url}/healthz") as r:
            assert r.status == 200, what
    # Duplicates, case-insensitively, and a name that is another's folder.
    for names in (["ok.txt", "OK.TXT"], ["a", "a/b.txt"], ["a/b.txt", "a"]):
        body = {
            "SAD": sad,
            "documents": [
                {"name": n, "content": base64.b64encode(n.encode() + b"!").decode()} for n in names
            ],
        }
        status, answer = await _post(client, cred, body)
        assert status == 400 and b"documents[1].name" in answer, (names, answer)
    # The same content twice, no documents, too many, a broken MIME type, unknown fields.
    bad_bodies = [
        {"SAD": sad, "documents": _documents([good, ("copy.txt", good[1], None)])},
        {"SAD": sad, "documents": []},
        {"SAD": sad, "documents": [{"name": f"f{i}", "content": ""} for i in range(101)]},
        {
            "SAD": sad,
            "documents": [{**_documents([good])[0], "mime_type": "text/plain\r\nX-Evil: 1"}],
        },
        {"SAD": sad, "documents": [{**_documents([good])[0], "path": "x"}]},
        {"SAD": sad, "documents": _documents([good]), "container": "asic-s"},
    ]
    for body in bad_bodies:
        status, answer = await _post(client, cred, body)
        assert status == 400, answer
        assert b"invalid_field" in answer, answer
    # Too large a body: 413, problem+json.
    async with client.session.post(
        f"{client.base_url}/api/v1/me/credentials/{cred['credential_id']}/sign-container",
        data=b"{" + b" " * (16 << 20) + b"}",
        headers={
            "Authorization": f"Bearer {client.access_token}",
            "Content-Type": "application/json",
        },
    ) as resp:
        assert resp.status == 413
        assert resp.content_type == "application/problem+json"
        assert (await resp.json(content_type=None))["code"] == "payload_too_large"
    assert await client.documents() == []
    # The SAD is still whole: the good file signs.
    _id, asice = await client.sign_container(cred["credential_id"], sad, [good])
    check = zipfile.ZipFile(io.BytesIO(asice))
    assert check.read("ok.txt") == good[1]
