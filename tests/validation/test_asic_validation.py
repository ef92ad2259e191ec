"""ASiC-E containers through `POST /api/v1/validate`: a container a citizen
made through the API passes (its CAdES signature over the manifest by the
CMS path, every file's digest checked); a replaced file fails on the hash, a
changed manifest fails the signature, a removed file is not found, an added
one is reported as not covered. ZIP bombs (huge sizes, many entries, a bomb
inside a signed file), duplicate and unsafe entry names are a clear 4xx, and
the service keeps serving."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import warnings
import zipfile
from collections.abc import Callable
from typing import Any

import aiohttp

from device_client.client import CloudsignClient
from tests.helpers import enrolled, passed_face_check
from tests.pdfs import simple_pdf

PASSWORD = "correct horse battery"
MANIFEST = "META-INF/ASiCManifest.xml"


async def _validate(
    http: aiohttp.ClientSession, base_url: str, **fields: bytes
) -> tuple[int, dict[str, Any]]:
    body = {k: base64.b64encode(v).decode() for k, v in fields.items()}
    async with http.post(f"{base_url}/api/v1/validate", json=body) as resp:
        return resp.status, await resp.json(content_type=None)


async def _alive(http: aiohttp.ClientSession, base_url: str) -> None:
    async with http.get(f"{base_url}/healthz") as resp:
        assert resp.status == 200


def _rebuilt(
    asice: bytes,
    change: Callable[[str, bytes], bytes | None] = lambda _n, data: data,
    extra: list[tuple[str, bytes]] | None = None,
) -> bytes:
    """The container entry by entry (the same order, `mimetype` stored first),
    each entry's bytes through `change` (None: left out), `extra` appended."""
    source = zipfile.ZipFile(io.BytesIO(asice))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for info in source.infolist():
            data = change(info.filename, source.read(info))
            if data is not None:
                z.writestr(info, data)
        for name, data in extra or []:
            z.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


def _zeros(size: int) -> bytes:
    """A ZIP with one deflated entry of `size` zero bytes, written in chunks."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z,
        z.open("zeros.bin", "w", force_zip64=False) as f,
    ):
        chunk = bytes(1 << 20)
        for _ in range(size >> 20):
            f.write(chunk)
    return out.getvalue()


def _files(bomb: bytes) -> list[tuple[str, bytes, str | None]]:
    return [
        ("contract.pdf", simple_pdf(f"contract {os.urandom(4).hex()}"), None),
        ("notes/readme.txt", b"read me " + os.urandom(8), None),
        # A signed file may itself be an archive (a .docx is one): it is
        # hashed, never opened, so a bomb inside does not unfold.
        ("archive.zip", bomb, "application/zip"),
    ]


def _by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in report["container"]["files"]}


async def test_asic_e_made_by_a_citizen_validates(
    client: CloudsignClient, http: aiohttp.ClientSession, base_url: str
) -> None:
    totp, cred = await enrolled(client)
    bomb = _zeros(256 << 20)  # 256 MiB of zeros in a few hundred KiB
    assert len(bomb) < 2 << 20
    files_t, files_lt = _files(bomb), _files(bomb + b"\0")
    face = await passed_face_check(client)
    sad = await client.authorize(
        cred["credential_id"],
        [hashlib.sha256(c).digest() for _n, c, _m in files_t + files_lt],
        password=PASSWORD,
        otp=await totp.fresh_code(),
        face_challenge_id=face,
    )
    _id, asice = await client.sign_container(cred["credential_id"], sad, files_t, level="T")
    _id, asice_lt = await client.sign_container(cred["credential_id"], sad, files_lt, level="LT")

    for container, level in ((asice, "B-T"), (asice_lt, "B-LT")):
        status, report = await _validate(http, base_url, signature=container)
        assert status == 200, report
        assert report["indication"] == "TOTAL-PASSED", report
        assert report["format"] == "ASiC-E"
        (sig,) = report["signatures"]
        assert sig["id"] == "META-INF/signature001.p7s" and sig["manifest"] == MANIFEST
        assert sig["level"] == level, sig
        assert sig["content"] == "detached"
        assert {r["name"] for r in sig["references"]} == {n for n, _c, _m in files_t}
        assert all(r["found"] and r["digest_matches"] for r in sig["references"])
        assert report["container"]["mimetype_ok"] is True
        assert report["container"]["all_files_covered"] is True
        assert {n: f["covered"] for n, f in _by_name(report).items()} == {
            n: True for n, _c, _m in files_t
        }

    # One file's bytes replaced: the digest check fails it.
    replaced = _rebuilt(asice, lambda n, d: b"forged " + d if n == "notes/readme.txt" else d)
    status, report = await _validate(http, base_url, signature=replaced)
    assert status == 200, report
    assert (report["indication"], report["sub_indication"]) == ("TOTAL-FAILED", "HASH_FAILURE")
    refs = {r["name"]: r for r in report["signatures"][0]["references"]}
    assert refs["notes/readme.txt"]["digest_matches"] is False
    assert refs["contract.pdf"]["digest_matches"] is True

    # A file added to the ZIP: the signature stands, the file is not covered.
    added = _rebuilt(asice, extra=[("added.txt", b"slipped in afterwards")])
    status, report = await _validate(http, base_url, signature=added)
    assert status == 200, report
    assert report["indication"] == "TOTAL-PASSED", report
    assert report["container"]["all_files_covered"] is False
    files = _by_name(report)
    assert files["added.txt"] == {"name": "added.txt", "covered": False, "signatures": []}
    assert files["contract.pdf"]["covered"] is True

    # A named file removed: its signed data is not found.
    removed = _rebuilt(asice, lambda n, d: None if n == "contract.pdf" else d)
    status, report = await _validate(http, base_url, signature=removed)
    assert status == 200, report
    assert (report["indication"], report["sub_indication"]) == (
        "INDETERMINATE",
        "SIGNED_DATA_NOT_FOUND",
    )

    # The manifest changed to match a forged file: the CAdES signature fails.
    forged = b"forged"
    digest = base64.b64encode(hashlib.sha256(forged).digest())
    original = base64.b64encode(hashlib.sha256(files_t[1][1]).digest())

    def forge(name: str, data: bytes) -> bytes:
        if name == "notes/readme.txt":
            return forged
        if name == MANIFEST:
            assert original in data
            return data.replace(original, digest)
        return data

    status, report = await _validate(http, base_url, signature=_rebuilt(asice, forge))
    assert status == 200, report
    assert report["indication"] == "TOTAL-FAILED", report
    assert all(r["digest_matches"] for r in report["signatures"][0]["references"])

    # The container carries its files: a detached content beside it is refused.
    status, report = await _validate(http, base_url, signature=asice, content=b"x")
    assert status == 400, report
    await _alive(http, base_url)


def _zip(entries: list[tuple[str, bytes]], *, first_mimetype: bool = True) -> bytes:
    out = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z:
            if first_mimetype:
                z.writestr(
                    "mimetype",
                    b"application/vnd.etsi.asic-e+zip",
                    compress_type=zipfile.ZIP_STORED,
                )
            for name, data in entries:
                z.writestr(name, data)
    return out.getvalue()


_MANIFEST_XML = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<asic:ASiCManifest xmlns:asic="http://uri.etsi.org/02918/v1.2.1#" '
    b'xmlns:ds="http://www.w3.org/2000/09/xmldsig#">'
    b'<asic:SigReference URI="META-INF/signature001.p7s"/>'
    b'<asic:DataObjectReference URI="a.txt">'
    b'<ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>'
    b"<ds:DigestValue>" + base64.b64encode(hashlib.sha256(b"a").digest()) + b"</ds:DigestValue>"
    b"</asic:DataObjectReference></asic:ASiCManifest>"
)


async def test_hostile_containers_are_refused(http: aiohttp.ClientSession, base_url: str) -> None:
    def bomb_container() -> bytes:
        # A 300 MiB entry deflated into a few hundred KiB, beside a manifest.
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z:
            z.writestr(
                "mimetype", b"application/vnd.etsi.asic-e+zip", compress_type=zipfile.ZIP_STORED
            )
            with z.open("a.txt", "w") as f:
                chunk = bytes(1 << 20)
                for _ in range(300):
                    f.write(chunk)
            z.writestr(MANIFEST, _MANIFEST_XML)
        return out.getvalue()

    cases: dict[str, tuple[bytes, int, str]] = {
        "huge uncompressed size": (bomb_container(), 400, "too_large"),
        "too many entries": (
            _zip([(f"f{i}.txt", b"") for i in range(5000)]),
            400,
            "too_large",
        ),
        "duplicate names": (
            _zip([("a.txt", b"a"), ("a.txt", b"evil"), (MANIFEST, _MANIFEST_XML)]),
            400,
            "malformed",
        ),
        "parent path": (
            _zip([("../a.txt", b"a"), (MANIFEST, _MANIFEST_XML)]),
            400,
            "malformed",
        ),
        "absolute path": (_zip([("/a.txt", b"a"), (MANIFEST, _MANIFEST_XML)]), 400, "malformed"),
        "backslash": (_zip([("..\\a.txt", b"a"), (MANIFEST, _MANIFEST_XML)]), 400, "malformed"),
        "entity in the manifest": (
            _zip(
                [
                    ("a.txt", b"a"),
                    (
                        MANIFEST,
                        _MANIFEST_XML.replace(b"?><", b'?><!DOCTYPE r [<!ENTITY x "y">]><', 1),
                    ),
                ]
            ),
            400,
            "malformed",
        ),
        "no signature file": (_zip([("a.txt", b"a"), (MANIFEST, _MANIFEST_XML)]), 400, "malformed"),
        "a ZIP that is no ASiC-E": (_zip([("a.txt", b"a")]), 422, "unsupported"),
        "truncated": (_zip([("a.txt", b"a"), (MANIFEST, _MANIFEST_XML)])[:-30], 400, "malformed"),
    }
    for what, (data, status, reason) in cases.items():
        assert len(data) < 20 << 20, what  # under validation_max_bytes: the worker reads it
        got, report = await _validate(http, base_url, signature=data)
        assert got == status, (what, report)
        assert report.get("reason") == reason, (what, report)
        assert report["detail"], (what, report)
        await _alive(http, base_url)
