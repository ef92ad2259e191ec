"""The validation report as a PDF for people (`Accept: application/pdf` on
`POST /api/v1/validate`): it parses (pyHanko's reader), and its text (read
back through each font's ToUnicode map) holds the indication, the signer's
(Cyrillic) name, the time-stamp and the SHA-256 of the file; JSON stays the
default. A signer's name full of markup, control characters and bidi
overrides, or twenty thousand characters long, from a certificate made with
`cryptography` and a CMS signed by openssl, is shown literally and cut, and
the PDF still parses."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import subprocess
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from asn1crypto import pem, x509
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pyhanko.pdf_utils.reader import PdfFileReader

from cloudsign.validation.api import wants_pdf
from cloudsign.validation.report_pdf import MAX_REPORT_CHARS, MAX_STRING_CHARS, clean, render
from device_client.client import CloudsignClient
from tests.helpers import enrolled, passed_face_check
from tests.pdfs import simple_pdf

PASSWORD = "correct horse battery"


# -- reading a PDF's text back ---------------------------------------------------------

_ESCAPES = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8, ord("f"): 12}
_DELIMS = b"()<>[]{}/% \t\r\n\x0c\x00"


def _literal(data: bytes, i: int) -> tuple[bytes, int]:
    """The literal string starting after the "(" at `i`; (its bytes, the index after it)."""
    out, depth = bytearray(), 1
    while True:
        c = data[i]
        i += 1
        if c == 0x5C:  # backslash
            e = data[i]
            i += 1
            if 0x30 <= e <= 0x37:
                digits = bytes([e])
                while len(digits) < 3 and 0x30 <= data[i] <= 0x37:
                    digits += bytes([data[i]])
                    i += 1
                out.append(int(digits, 8) & 0xFF)
            elif e in (0x0A, 0x0D):
                continue
            else:
                out.append(_ESCAPES.get(e, e))
        elif c == 0x28:
            depth += 1
            out.append(c)
        elif c == 0x29:
            depth -= 1
            if depth == 0:
                return bytes(out), i
            out.append(c)
        else:
            out.append(c)


def _tounicode(font: Any) -> dict[int, str] | None:
    if "/ToUnicode" not in font:
        return None
    cmap = font["/ToUnicode"].get_object().data.decode("latin-1")
    table: dict[int, str] = {}
    for block in re.findall(r"beginbfchar(.*?)endbfchar", cmap, re.S):
        for code, uni in re.findall(r"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
            text = bytes.fromhex(uni).decode("utf-16-be")
            if text != "\x00":
                table[int(code, 16)] = text
    assert "beginbfrange" not in cmap  # reportlab writes single codes only
    return table


def _pages(node: Any) -> list[Any]:
    node = node.get_object()
    if "/Kids" in node:
        return [p for kid in node["/Kids"] for p in _pages(kid)]
    return [node]


def pdf_text(data: bytes) -> str:
    """The text a PDF shows, in drawing order, each piece as drawn (no spaces
    added between lines), through its fonts' ToUnicode maps."""
    reader = PdfFileReader(io.BytesIO(data), strict=True)
    shown: list[str] = []
    for page in _pages(reader.root["/Pages"]):
        fonts = {
            str(name): _tounicode(ref.get_object())
            for name, ref in page["/Resources"]["/Font"].items()
        }
        contents = page["/Contents"]
        contents = contents.get_object()
        streams = list(contents) if isinstance(contents, list) else [contents]
        stream = b"\n".join(s.get_object().data for s in streams)
        cmap: dict[int, str] | None = None
        last_name = ""
        i = 0
        while i < len(stream):
            c = stream[i]
            if c == 0x28:
                raw, i = _literal(stream, i + 1)
                if cmap is None:
                    shown.append(raw.decode("latin-1"))
                else:
                    shown.append("".join(cmap.get(b, "\ufffd") for b in raw))
                continue
            if c == 0x2F:
                j = i + 1
                while j < len(stream) and stream[j] not in _DELIMS:
                    j += 1
                last_name = stream[i:j].decode()
                i = j
                continue
            if stream.startswith(b"Tf", i) and last_name in fonts:
                cmap = fonts[last_name]
            i += 1
    return "".join(shown)


def _squeezed(text: str) -> str:
    return re.sub(r"\s+", "", text)


# -- units ---------------------------------------------------------------------------


def test_accept_header_decides_and_json_is_the_default() -> None:
    assert wants_pdf("application/pdf")
    assert wants_pdf("application/pdf, application/json;q=0.5")
    assert wants_pdf("application/json;q=0.2, application/pdf;q=0.9")
    assert wants_pdf("application/pdf, */*;q=0.1")
    for header in (
        None,
        "",
        "*/*",
        "application/json",
        "application/json, application/pdf",  # a tie: JSON
        "application/pdf;q=0",
        "application/pdf;q=nonsense",
        "application/pdf;q=0.5, application/*",
        "text/html",
    ):
        assert not wants_pdf(header), header


def test_clean_shows_controls_and_cuts() -> None:
    assert clean("a\x00b\u202ec\u200bd") == "a[U+0000]b[U+202E]c[U+200B]d"
    assert clean("line\nbreak\ttab") == "line break tab"
    assert clean("e\u0301") == "\u00e9"  # NFC
    assert clean('<font name="x">&amp;') == '<font name="x">&amp;'  # escaped later, not here
    long = clean("x" * 100_000)
    assert len(long) <= MAX_STRING_CHARS + 10 and long.endswith("[… cut]")
    assert clean(12) == "12"


HOSTILE_NAME = (
    '<font name="Courier" size="80">Evil</font> &amp; <b>Corp</b> <a href="javascript:x">'
    "\x07\x1b[31m\u202eoknod\u2066 ]]> %%EOF) Tj (endobj"
)


def test_render_hostile_report_keeps_text_literal() -> None:
    """A report whose every string is hostile, and whose shapes are wrong
    (a string for a dict, a number for a list): rendered, and the markup
    shown as text."""
    sig = {
        "id": HOSTILE_NAME,
        "indication": "INDETERMINATE",
        "sub_indication": "<b>GENERIC</b>",
        "signer": {"subject": HOSTILE_NAME, "serial": "\x00" * 50, "not_after": "not a date"},
        "signature_timestamp": {"time": "2026-12-04T01:00:00+00:00", "verified": False, "tsa": 7},
        "chain": [{"subject": "Я" * 50_000}] + [{"subject": "CA"}] * 199,
        "revocation": "good",
        "checks": None,
        "coverage": {"references": [{"uri": HOSTILE_NAME}], "whole_document": False},
        "references": [{"name": "a<b>.txt", "found": True, "digest_matches": False}],
    }
    report = {
        "indication": "INDETERMINATE",
        "sub_indication": "GENERIC",
        "format": "<script>",
        "validation_time": "2026-12-04T01:02:03+00:00",
        "signatures": [sig, "not a dict", {"signer": "neither"}],
        "container": {
            "type": "ASiC-E",
            "all_files_covered": False,
            "files": [{"name": "a<b>.txt", "covered": True, "signatures": ["s1"]}, {"name": 3}],
        },
    }
    data = render(report, file_sha256="ab" * 32, service="cloudsign & co <test>")
    text = _squeezed(pdf_text(data))
    assert _squeezed('<font name="Courier" size="80">Evil</font> &amp; <b>Corp</b>') in text
    assert "[U+0007][U+001B][31m[U+202E]oknod[U+2066]" in text
    assert "%%EOF)Tj(endobj" in text
    assert "cloudsign&co<test>" in text and "ab" * 32 in text
    assert "2026-12-0401:02:03UTC" in text
    assert "…168more" in text  # 200 chain entries, 32 shown
    assert "[…cut]" in text
    assert "a<b>.txt:digestDOESNOTmatch" in text and "a<b>.txt:signedbys1" in text
    assert "3:NOTsigned" in text and "Everyfilesigned:no" in text


def test_a_report_past_the_text_budget_is_cut_and_says_so() -> None:
    """Sixteen signatures whose every string is 3000 characters: the PDF
    stops at its text budget, after the verdict, and says where the rest is."""
    long = "W" * 3000
    cert = dict.fromkeys(("subject", "serial", "issuer"), long)
    sig = {
        "id": long,
        "indication": "TOTAL-PASSED",
        "sub_indication": long,
        "signer": cert,
        "chain": [cert] * 40,
        "revocation": {"status": long},
    }
    report = {"indication": "TOTAL-FAILED", "format": "PAdES", "signatures": [sig] * 16}
    data = render(report, file_sha256="cd" * 32, service="cloudsign")
    text = _squeezed(pdf_text(data))
    assert text.startswith("SignaturevalidationreportTOTAL-FAILED")
    assert "cd" * 32 in text
    assert text.endswith(
        _squeezed("the rest is in the JSON report")
        + _squeezed("(the same request without Accept: application/pdf).")
    )
    reader = PdfFileReader(io.BytesIO(data), strict=True)
    assert len(_pages(reader.root["/Pages"])) <= 12
    assert len(text) <= MAX_REPORT_CHARS


# -- against the running service -----------------------------------------------------


def _cert(text: str) -> x509.Certificate:
    return x509.Certificate.load(pem.unarmor(text.encode())[2])


async def _report(
    http: aiohttp.ClientSession, base_url: str, accept: str | None, **fields: bytes
) -> tuple[int, str, bytes]:
    body = {k: base64.b64encode(v).decode() for k, v in fields.items()}
    headers = {} if accept is None else {"Accept": accept}
    async with http.post(f"{base_url}/api/v1/validate", json=body, headers=headers) as resp:
        return resp.status, resp.content_type, await resp.read()


async def test_a_service_signature_as_a_pdf_report(
    client: CloudsignClient, http: aiohttp.ClientSession, base_url: str
) -> None:
    totp, cred = await enrolled(client)
    certificate = _cert(cred["certificate"])
    pdf = simple_pdf("reported as a PDF")
    face = await passed_face_check(client)
    sad = await client.authorize(
        cred["credential_id"],
        [hashlib.sha256(pdf).digest()],
        password=PASSWORD,
        otp=await totp.fresh_code(),
        face_challenge_id=face,
    )
    _id, signed = await client.sign_document(
        cred["credential_id"], sad, document=pdf, signature_format="pades", name="r.pdf", level="T"
    )

    status, kind, body = await _report(http, base_url, "application/pdf", signature=signed)
    assert status == 200 and kind == "application/pdf", body[:300]
    assert body.startswith(b"%PDF-")
    text = _squeezed(pdf_text(body))
    assert "TOTAL-PASSED" in text
    subject = certificate.subject.human_friendly
    assert any("\u0400" <= ch <= "\u04ff" for ch in subject)  # a Cyrillic name, drawn as such
    assert _squeezed(subject) in text
    assert format(certificate.serial_number, "x") in text
    assert hashlib.sha256(signed).hexdigest() in text
    assert "PAdES" in text and "B-T" in text
    assert "Signaturetime-stamp:" in text and "verified" in text
    assert "Revocation:good" in text
    assert "Certificatechain(signerfirst):" in text
    assert "Validatedby:" in text

    # JSON by default, for */*, and on a tie.
    for accept in (None, "*/*", "application/json, application/pdf"):
        status, kind, body = await _report(http, base_url, accept, signature=signed)
        assert status == 200 and kind == "application/json", accept
    # An error stays problem+json, whatever was asked for.
    status, kind, _body = await _report(http, base_url, "application/pdf", signature=b"\x00" * 8)
    assert status == 400 and kind == "application/problem+json"


def _pem(path: Path, obj: Any) -> None:
    if isinstance(obj, cx509.Certificate):
        path.write_bytes(obj.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(
            obj.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )


def _issue(subject: cx509.Name, issuer: cx509.Name, key: Any, signer: Any, ca: bool) -> Any:
    now = datetime.now(UTC)
    return (
        cx509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(cx509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(cx509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(signer, hashes.SHA256())
    )


@pytest.mark.parametrize("size", ["markup", "huge"])
async def test_a_hostile_signer_name_is_shown_literally(
    size: str, http: aiohttp.ClientSession, base_url: str, tmp_path: Path
) -> None:
    """A certificate (made with `cryptography`, under a CA the service does
    not know) whose name is markup and control characters, or 20 000
    characters, and a CMS openssl signed with it: the PDF report parses and
    shows the name as text, cut when huge."""
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, "Hostile Test CA")])
    common = HOSTILE_NAME if size == "markup" else "Ω" * 20_000
    with warnings.catch_warnings():  # a common name over 64 characters, on purpose
        warnings.simplefilter("ignore", UserWarning)
        name = cx509.Name(
            [
                cx509.NameAttribute(NameOID.ORGANIZATION_NAME, "<i>Org</i>"),
                cx509.NameAttribute(NameOID.COMMON_NAME, common, _validate=False),
            ]
        )
    ca = _issue(ca_name, ca_name, ca_key, ca_key, ca=True)
    leaf = _issue(name, ca_name, key, ca_key, ca=False)
    for file, obj in (("ca.pem", ca), ("leaf.pem", leaf), ("key.pem", key)):
        _pem(tmp_path / file, obj)
    doc = tmp_path / "doc"
    doc.write_bytes(os.urandom(500))
    out = tmp_path / "a.p7s"
    result = subprocess.run(
        [
            "openssl",
            "cms",
            "-sign",
            "-nodetach",
            "-binary",
            "-md",
            "sha256",
            *("-in", str(doc), "-signer", str(tmp_path / "leaf.pem")),
            *("-inkey", str(tmp_path / "key.pem"), "-certfile", str(tmp_path / "ca.pem")),
            *("-outform", "DER", "-out", str(out)),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr

    status, kind, body = await _report(http, base_url, None, signature=out.read_bytes())
    assert status == 200 and kind == "application/json", body[:300]
    report = json.loads(body)
    assert report["indication"] == "INDETERMINATE" and report["sub_indication"]
    status, kind, body = await _report(
        http, base_url, "application/pdf", signature=out.read_bytes()
    )
    assert status == 200 and kind == "application/pdf", body[:300]
    text = _squeezed(pdf_text(body))
    assert f"INDETERMINATE·{report['sub_indication']}" in text
    if size == "markup":
        assert "<i>Org</i>" in text
        assert _squeezed('<font name="Courier" size="80">Evil</font> &amp; <b>Corp</b>') in text
        assert "[U+0007][U+001B][31m[U+202E]oknod[U+2066]" in text
    else:
        assert "Ω" * 1000 in text and "Ω" * (MAX_STRING_CHARS + 1) not in text
        assert "[…cut]" in text
