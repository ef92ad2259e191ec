"""Reading an untrusted ASiC-E container (ETSI EN 319 162-1) in the
validation worker, in bounded memory and time.

Before Python's `zipfile` parses the central directory, the end record's
entry count is read and more than `MAX_ENTRIES` (or a ZIP64 archive) is
refused. Declared sizes are checked before anything is decompressed, and
the bytes actually decompressed are counted while they stream through the
hash (a header that lies about its size, or entries that overlap, cannot
get past `MAX_TOTAL_BYTES`). Only `META-INF/` manifests and signatures are
held in memory (each at most `MAX_META_BYTES`); every other file is
hashed chunk by chunk. Nothing is ever written to disk, and a ZIP inside
the container is a data object like any other: its bytes are hashed, it is
never opened, so a nested bomb does not unfold. Duplicate or unsafe entry
names (absolute, `..`, backslashes, control characters) are refused: the
file that would be hashed would not be the one an extractor writes.

The manifests (`META-INF/ASiCManifest*.xml`) are parsed with the service's
one untrusted-XML parser (cloudsign/web/xml.py); each names its CAdES
signature (`asic:SigReference`) and the files it covers
(`asic:DataObjectReference`, digest per file)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import unquote

from cloudsign.web.xml import UntrustedXmlError, parse_untrusted

MIMETYPE: Final = b"application/vnd.etsi.asic-e+zip"
ASIC_NS: Final = "http://uri.etsi.org/02918/v1.2.1#"
DS_NS: Final = "http://www.w3.org/2000/09/xmldsig#"
#: Entries of one container (files, manifests, signatures, folders).
MAX_ENTRIES: Final = 512
#: Bytes decompressed from the whole container (and so from any one entry).
MAX_TOTAL_BYTES: Final = 256 << 20
#: A manifest or a signature, held in memory.
MAX_META_BYTES: Final = 4 << 20
#: Signatures (manifest and .p7s pairs) validated in one container.
MAX_SIGNATURES: Final = 8
MAX_NAME_BYTES: Final = 1024
_CHUNK: Final = 1 << 16
_EOCD: Final = b"PK\x05\x06"
_EOCD_SIZE: Final = 22
_ZIP64_LOCATOR: Final = b"PK\x06\x07"
_MANIFEST: Final = re.compile(r"META-INF/ASiCManifest[^/]*\.xml")
_BAD_NAME: Final = re.compile(r"[\x00-\x1f\x7f\\]")
#: XMLDSig digest URIs and hashlib's names.
DIGESTS: Final = {
    "http://www.w3.org/2001/04/xmlenc#sha256": "sha256",
    "http://www.w3.org/2001/04/xmldsig-more#sha384": "sha384",
    "http://www.w3.org/2001/04/xmlenc#sha512": "sha512",
    "http://www.w3.org/2001/04/xmldsig-more#sha224": "sha224",
}


class AsicError(Exception):
    """Why a container is refused: `code` `malformed`, `too_large` or `unsupported`."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class Reference:
    """One `asic:DataObjectReference`: the file, its digest and whether the
    container's file has it."""

    name: str
    mime_type: str | None
    algorithm: str  # hashlib name
    expected: bytes
    found: bool
    matches: bool


@dataclass(frozen=True)
class SignedManifest:
    manifest_name: str
    manifest: bytes
    signature_name: str
    signature: bytes
    references: list[Reference]


@dataclass(frozen=True)
class Container:
    mimetype_ok: bool  # `mimetype` first, stored, with the ASiC-E type
    signatures: list[SignedManifest]
    files: list[str]  # every data object (not META-INF/, not mimetype, not a folder)
    covered: frozenset[str] = field(default_factory=frozenset)


def looks_like_zip(data: bytes) -> bool:
    return data[:4] == b"PK\x03\x04"


def _entry_count(data: bytes) -> int:
    """The end of central directory record's entry count, read before
    zipfile builds one object per entry."""
    start = data.rfind(_EOCD, max(0, len(data) - _EOCD_SIZE - 0xFFFF))
    if start < 0 or len(data) - start < _EOCD_SIZE:
        raise AsicError("malformed", "the ZIP has no end of central directory record")
    (_sig, disk, cd_disk, on_disk, total, _size, _offset, _comment) = struct.unpack(
        "<4s4H2LH", data[start : start + _EOCD_SIZE]
    )
    if disk or cd_disk or on_disk != total:
        raise AsicError("unsupported", "multi-volume ZIP archives are not supported")
    if total == 0xFFFF or data.rfind(_ZIP64_LOCATOR, max(0, start - 20), start) >= 0:
        raise AsicError("unsupported", "ZIP64 archives are not supported")
    if total > MAX_ENTRIES:
        raise AsicError("too_large", f"the container has more than {MAX_ENTRIES} entries")
    return int(total)


def _check_name(name: str) -> None:
    if (
        not name
        or len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES
        or name.startswith("/")
        or _BAD_NAME.search(name)
        or re.match(r"[A-Za-z]:", name)
        or any(part in (".", "..") for part in name.split("/"))
    ):
        raise AsicError("malformed", f"the container has an unsafe entry name: {name[:80]!a}")


class _Budget:
    """Bytes decompressed so far, across every entry."""

    def __init__(self) -> None:
        self.used = 0

    def take(self, n: int) -> None:
        self.used += n
        if self.used > MAX_TOTAL_BYTES:
            raise AsicError(
                "too_large",
                f"the container unpacks to more than {MAX_TOTAL_BYTES >> 20} MiB",
            )


def _read(z: zipfile.ZipFile, info: zipfile.ZipInfo, budget: _Budget, limit: int) -> bytes:
    if info.file_size > limit:
        raise AsicError("too_large", f"{info.filename[:80]!a} is larger than {limit} bytes")
    chunks: list[bytes] = []
    got = 0
    with z.open(info) as f:
        while chunk := f.read(_CHUNK):
            got += len(chunk)
            budget.take(len(chunk))
            if got > limit:
                raise AsicError("too_large", f"{info.filename[:80]!a} is larger than {limit} bytes")
            chunks.append(chunk)
    return b"".join(chunks)


def _digests(
    z: zipfile.ZipFile, info: zipfile.ZipInfo, budget: _Budget, algorithms: set[str]
) -> dict[str, bytes]:
    hashes = {a: hashlib.new(a) for a in algorithms}
    with z.open(info) as f:
        while chunk := f.read(_CHUNK):
            budget.take(len(chunk))
            for h in hashes.values():
                h.update(chunk)
    return {a: h.digest() for a, h in hashes.items()}


def _parse_manifest(name: str, xml: bytes) -> tuple[str, list[tuple[str, str | None, str, bytes]]]:
    """(the signature's name, [(file, MIME type, hashlib name, digest)])."""
    try:
        root = parse_untrusted(xml)
    except UntrustedXmlError as e:
        raise AsicError("malformed", f"{name}: {e.message}") from e
    if root.tag != f"{{{ASIC_NS}}}ASiCManifest":
        raise AsicError("malformed", f"{name} is not an asic:ASiCManifest")
    sig_refs = root.findall(f"{{{ASIC_NS}}}SigReference")
    if len(sig_refs) != 1 or not sig_refs[0].get("URI"):
        raise AsicError("malformed", f"{name} must name exactly one signature (SigReference)")
    refs = []
    for ref in root.findall(f"{{{ASIC_NS}}}DataObjectReference"):
        uri = ref.get("URI")
        method = ref.find(f"{{{DS_NS}}}DigestMethod")
        value = ref.find(f"{{{DS_NS}}}DigestValue")
        if not uri or method is None or value is None:
            raise AsicError("malformed", f"{name}: a DataObjectReference is incomplete")
        algorithm = DIGESTS.get(method.get("Algorithm") or "")
        if algorithm is None:
            raise AsicError(
                "unsupported", f"{name}: digest method {(method.get('Algorithm') or '')[:80]!a}"
            )
        try:
            digest = base64.b64decode((value.text or "").strip(), validate=True)
        except (binascii.Error, ValueError) as e:
            raise AsicError("malformed", f"{name}: a DigestValue is not base64") from e
        refs.append((unquote(uri), ref.get("MimeType"), algorithm, digest))
    if not refs:
        raise AsicError("malformed", f"{name} names no file (DataObjectReference)")
    return unquote(sig_refs[0].get("URI")), refs


def read_container(data: bytes) -> Container:
    """The container's manifests, their signatures and each reference's
    digest check, or `AsicError`."""
    count = _entry_count(data)
    try:
        z = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as e:
        raise AsicError("malformed", "the container is not a readable ZIP") from e
    with z:
        infos = z.infolist()
        if len(infos) > count or len(infos) > MAX_ENTRIES:
            raise AsicError("too_large", f"the container has more than {MAX_ENTRIES} entries")
        names = [i.filename for i in infos]
        for name in names:
            _check_name(name)
        if len(set(names)) != len(names):
            raise AsicError("malformed", "the container has two entries with the same name")
        declared = sum(i.file_size for i in infos)
        if declared > MAX_TOTAL_BYTES:
            raise AsicError(
                "too_large",
                f"the container declares more than {MAX_TOTAL_BYTES >> 20} MiB of content",
            )
        by_name = {i.filename: i for i in infos}
        budget = _Budget()
        try:
            return _read_entries(z, infos, by_name, budget)
        except (zipfile.BadZipFile, EOFError, zlib.error, ValueError) as e:
            raise AsicError("malformed", f"an entry of the container is broken ({e})") from e
        except (NotImplementedError, RuntimeError) as e:  # a compression method, encryption
            raise AsicError("unsupported", f"an entry of the container cannot be read ({e})") from e


def _read_entries(
    z: zipfile.ZipFile,
    infos: list[zipfile.ZipInfo],
    by_name: dict[str, zipfile.ZipInfo],
    budget: _Budget,
) -> Container:
    first = infos[0] if infos else None
    mimetype_ok = (
        first is not None
        and first.filename == "mimetype"
        and first.compress_type == zipfile.ZIP_STORED
        and not first.extra
        and _read(z, first, budget, len(MIMETYPE)) == MIMETYPE
    )
    manifests = sorted(n for n in by_name if _MANIFEST.fullmatch(n))
    if not manifests:
        raise AsicError("unsupported", "a ZIP without META-INF/ASiCManifest.xml (no ASiC-E CAdES)")
    if len(manifests) > MAX_SIGNATURES:
        raise AsicError("unsupported", f"more than {MAX_SIGNATURES} signatures in one container")
    parsed = []
    for name in manifests:
        xml = _read(z, by_name[name], budget, MAX_META_BYTES)
        sig_name, refs = _parse_manifest(name, xml)
        if sig_name not in by_name:
            raise AsicError("malformed", f"{name} names a signature the container lacks")
        if not sig_name.startswith("META-INF/") or not sig_name.endswith(".p7s"):
            raise AsicError("unsupported", f"{name}: only CAdES (.p7s) signatures are validated")
        parsed.append((name, xml, sig_name, refs))
    files = [
        i.filename
        for i in infos
        if not i.is_dir() and i.filename != "mimetype" and not i.filename.startswith("META-INF/")
    ]
    wanted: dict[str, set[str]] = {}
    for _name, _xml, _sig, refs in parsed:
        for file, _mime, algorithm, _digest in refs:
            if file in files:
                wanted.setdefault(file, set()).add(algorithm)
    digests = {f: _digests(z, by_name[f], budget, algs) for f, algs in wanted.items()}
    signatures = []
    for name, xml, sig_name, refs in parsed:
        signature = _read(z, by_name[sig_name], budget, MAX_META_BYTES)
        references = [
            Reference(
                name=file,
                mime_type=mime,
                algorithm=algorithm,
                expected=digest,
                found=file in digests,
                matches=file in digests and digests[file][algorithm] == digest,
            )
            for file, mime, algorithm, digest in refs
        ]
        signatures.append(SignedManifest(name, xml, sig_name, signature, references))
    return Container(
        mimetype_ok=mimetype_ok,
        signatures=signatures,
        files=files,
        covered=frozenset(r.name for s in signatures for r in s.references if r.found),
    )
