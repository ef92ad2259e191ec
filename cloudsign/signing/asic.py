"""ASiC-E with CAdES (ETSI EN 319 162-1 4.4): one signature over several files.

The container is a ZIP: first `mimetype` (stored, no extra field, content
`application/vnd.etsi.asic-e+zip`), then the signed files under the names the
citizen gave, then `META-INF/ASiCManifest.xml` (an `asic:ASiCManifest`
naming the signature in `asic:SigReference` and every file in an
`asic:DataObjectReference` with its SHA-256) and `META-INF/signature001.p7s`,
a detached CAdES signature (cms.py's `cades_detached`, levels B, T and LT)
over the manifest's bytes.

The SAD covers the SHA-256 of every file, exactly as for sign-document: each
file's hash is reserved under the SAD, the manifest is built from exactly
those files, and the HSM signs the CAdES signed attributes over the
manifest's digest. A file the SAD does not cover refuses the whole request
before anything is signed. Each file gets its `key.use` event; the
container is one cabinet row (format `asice`, `document_hash` the SHA-256 of
the manifest, the data object the CAdES signature is over).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import mimetypes
import re
import unicodedata
import uuid
import zipfile
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote

from lxml import etree
from sqlalchemy import insert

from cloudsign.credentials import Credential
from cloudsign.errors import ValidationError
from cloudsign.events import EventType, NewEvent, append_events
from cloudsign.signing.cms import CADES_LEVELS, cades_detached
from cloudsign.signing.sad import Authorization, Left
from cloudsign.signing.service import RETENTION_AFTER_EXPIRY, SigningService
from cloudsign.signing.tables import signed_documents

MIMETYPE: Final = "application/vnd.etsi.asic-e+zip"
MANIFEST_PATH: Final = "META-INF/ASiCManifest.xml"
SIGNATURE_PATH: Final = "META-INF/signature001.p7s"
ASIC_NS: Final = "http://uri.etsi.org/02918/v1.2.1#"
DS_NS: Final = "http://www.w3.org/2000/09/xmldsig#"
SHA256_URI: Final = "http://www.w3.org/2001/04/xmlenc#sha256"
#: The cabinet's format of a container.
FORMAT: Final = "asice"
#: Files in one container.
MAX_FILES: Final = 100
#: A file's name inside the container: characters, and UTF-8 bytes (the ZIP
#: field is 16 bits; extractors have their own path limits).
MAX_NAME_CHARS: Final = 255
MAX_NAME_BYTES: Final = 1024
#: Path segments of a name (`a/b/c.pdf` has three).
MAX_NAME_DEPTH: Final = 8
MAX_MIME_CHARS: Final = 127
_MIME: Final = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,62}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,62}"
)
#: Characters no name may hold: controls, and those Windows refuses in a path.
_FORBIDDEN: Final = re.compile(r'[\x00-\x1f\x7f-\x9f\\:*?"<>|]')
_RESERVED_SEGMENTS: Final = frozenset(
    ["con", "prn", "aux", "nul"]
    + [f"com{i}" for i in range(1, 10)]
    + [f"lpt{i}" for i in range(1, 10)]
)


@dataclass(frozen=True)
class ContainerFile:
    """One file to sign, as the citizen sent it."""

    name: str
    content: bytes
    mime_type: str | None = None

    def __repr__(self) -> str:
        return f"ContainerFile({len(self.content)} bytes)"


@dataclass(frozen=True)
class ContainerRequest:
    credential_id: str
    sad: str | None
    level: str
    files: list[ContainerFile]
    name: str | None

    def __repr__(self) -> str:
        return f"ContainerRequest(credential_id={self.credential_id!r}, {len(self.files)} files)"


# -- names -------------------------------------------------------------------------


def check_name(name: str, field: str) -> str:
    """A safe relative path inside the container, or a ValidationError naming
    `field`: no absolute path or drive, no `.`/`..` or empty segment, no
    backslash or control character, not `mimetype` or under `META-INF/`,
    bounded length and depth; NFC-normalised."""
    name = unicodedata.normalize("NFC", name)
    if not name or len(name) > MAX_NAME_CHARS or len(name.encode()) > MAX_NAME_BYTES:
        raise ValidationError(f"a file name must be 1..{MAX_NAME_CHARS} characters", field=field)
    if _FORBIDDEN.search(name):
        raise ValidationError(
            'a file name may not hold control characters or any of \\ : * ? " < > |',
            field=field,
        )
    if name.startswith("/"):
        raise ValidationError("a file name must be a relative path", field=field)
    segments = name.split("/")
    if len(segments) > MAX_NAME_DEPTH:
        raise ValidationError(f"a file name has at most {MAX_NAME_DEPTH} segments", field=field)
    for segment in segments:
        if segment in ("", ".", ".."):
            raise ValidationError(
                "a file name may not have empty, '.' or '..' segments", field=field
            )
        if segment != segment.strip() or segment.endswith("."):
            raise ValidationError(
                "a file name segment may not start or end with a space or end with '.'",
                field=field,
            )
        if segment.split(".", 1)[0].lower() in _RESERVED_SEGMENTS:
            raise ValidationError("a file name segment is a reserved device name", field=field)
    if segments[0].upper() == "META-INF" or name.lower() == "mimetype":
        raise ValidationError(
            "'mimetype' and names under META-INF/ are the container's own", field=field
        )
    return name


def checked_files(files: list[ContainerFile]) -> list[ContainerFile]:
    """The files with safe, distinct names (case-insensitively, and no name is
    also another's folder) and a well-formed MIME type where one is given."""
    if not 1 <= len(files) <= MAX_FILES:
        raise ValidationError(f"send 1..{MAX_FILES} documents", field="documents")
    out: list[ContainerFile] = []
    seen: set[str] = set()
    folders: set[str] = set()
    for i, f in enumerate(files):
        field = f"documents[{i}].name"
        name = check_name(f.name, field)
        key = name.casefold()
        if key in seen:
            raise ValidationError("two documents have the same name", field=field)
        if key in folders:
            raise ValidationError("a document's name is another document's folder", field=field)
        parts = key.split("/")
        parents = {"/".join(parts[:n]) for n in range(1, len(parts))}
        if parents & seen:
            raise ValidationError("a document's name is another document's folder", field=field)
        seen.add(key)
        folders |= parents
        mime = f.mime_type
        if mime is not None and (len(mime) > MAX_MIME_CHARS or not _MIME.fullmatch(mime)):
            raise ValidationError(
                "mime_type must be a MIME type such as application/pdf",
                field=f"documents[{i}].mime_type",
            )
        if mime is None:
            mime = mimetypes.guess_type(name, strict=True)[0]
        out.append(ContainerFile(name, f.content, mime))
    return out


# -- the container -------------------------------------------------------------------


def manifest(files: list[ContainerFile]) -> bytes:
    """`META-INF/ASiCManifest.xml`: the signature's reference and each file's
    SHA-256 (URIs percent-encoded, RFC 3986)."""
    nsmap = {"asic": ASIC_NS, "ds": DS_NS}
    root = etree.Element(etree.QName(ASIC_NS, "ASiCManifest"), nsmap=nsmap)
    etree.SubElement(
        root,
        etree.QName(ASIC_NS, "SigReference"),
        URI=SIGNATURE_PATH,
        MimeType="application/pkcs7-signature",
    )
    for f in files:
        ref = etree.SubElement(
            root, etree.QName(ASIC_NS, "DataObjectReference"), URI=quote(f.name, safe="/")
        )
        if f.mime_type:
            ref.set("MimeType", f.mime_type)
        etree.SubElement(ref, etree.QName(DS_NS, "DigestMethod"), Algorithm=SHA256_URI)
        value = etree.SubElement(ref, etree.QName(DS_NS, "DigestValue"))
        value.text = base64.b64encode(hashlib.sha256(f.content).digest()).decode()
    out: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8", standalone=True)
    return out


def _entry(name: str, compress: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = compress
    info.create_system = 0  # no Unix mode bits: nothing executable, no symlink
    info.external_attr = 0
    return info


def container(files: list[ContainerFile], manifest_xml: bytes, signature: bytes) -> bytes:
    """The ASiC-E ZIP: `mimetype` first, stored, without an extra field."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr(_entry("mimetype", zipfile.ZIP_STORED), MIMETYPE.encode())
        for f in files:
            z.writestr(_entry(f.name, zipfile.ZIP_DEFLATED), f.content)
        z.writestr(_entry(MANIFEST_PATH, zipfile.ZIP_DEFLATED), manifest_xml)
        z.writestr(_entry(SIGNATURE_PATH, zipfile.ZIP_STORED), signature)
    return out.getvalue()


# -- signing -------------------------------------------------------------------------


async def sign_container(
    signing: SigningService, owner_id: str, req: ContainerRequest
) -> tuple[str, bytes]:
    """An ASiC-E container over `req.files`, its CAdES signature at level B,
    T or LT. Every refusal about the request (level, names, types) comes
    before the SAD is touched. Returns (signature id, the .asice bytes)."""
    if req.level not in CADES_LEVELS:
        raise ValidationError(
            f"ASiC-E (CAdES) is offered at levels {', '.join(CADES_LEVELS)}", field="level"
        )
    files = checked_files(req.files)
    digests = [hashlib.sha256(f.content).digest() for f in files]
    if len(set(digests)) != len(digests):
        raise ValidationError("two documents have the same content", field="documents")
    manifest_xml = manifest(files)
    manifest_digest = hashlib.sha256(manifest_xml).digest()
    reserved = await signing.reserve_document(owner_id, req.credential_id, req.sad, digests)
    cred, auth, signer, services = reserved.cred, reserved.auth, reserved.signer, reserved.services
    level = req.level
    try:
        p7s = await signing.documents.run(
            lambda session: cades_detached(
                signer, manifest_digest, "sha256", session=session, level=level, services=services
            )
        )
        output = container(files, manifest_xml, p7s)
        doc_id, left = await _record(signing, auth, cred, digests, manifest_digest, output, req)
    except BaseException:
        await asyncio.shield(signing.sads.release(auth, digests))
        raise
    await signing.sads.finished(auth, left)
    return doc_id, output


async def _record(
    signing: SigningService,
    auth: Authorization,
    cred: Credential,
    digests: list[bytes],
    manifest_digest: bytes,
    output: bytes,
    req: ContainerRequest,
) -> tuple[str, Left]:
    """One transaction: a `key.use` event per file (its hash, the container's
    signature id), the SAD's hashes marked signed, one cabinet row."""
    now = signing.clock()
    doc_id = str(uuid.uuid4())
    async with signing.db.transaction() as conn:
        await append_events(
            conn,
            [
                NewEvent(
                    EventType.KEY_USE,
                    now,
                    auth.owner_id,
                    cred.id,
                    {
                        "document_hash": digest.hex(),
                        "hash_algorithm": "sha256",
                        "format": FORMAT,
                        "authorization": auth.id,
                        "signature_id": doc_id,
                    },
                )
                for digest in digests
            ],
        )
        left = await signing.sads.mark_signed(conn, auth, digests)
        await conn.execute(
            insert(signed_documents).values(
                id=doc_id,
                owner_id=auth.owner_id,
                credential_id=cred.id,
                certificate_serial=cred.certificate_serial,
                name=req.name,
                hash_algorithm="sha256",
                document_hash=manifest_digest.hex(),
                format=FORMAT,
                signature=output,
                signed_at=now,
                keep_until=cred.certificate.not_valid_after + RETENTION_AFTER_EXPIRY,
            )
        )
    return doc_id, left
