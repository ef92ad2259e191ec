"""Day export: a JSON-lines file with which an auditor checks one day alone.

This module owns the file format and its writer and streaming reader.

Line 1 is the header object::

    {"format": "cloudsign-audit-day/2", "contents": "public" | "full",
     "day": "2025-01-31", "utc_offset": "+05:00",
     "origin": "<log origin>", "previous": {"checkpoint": "<signed note>", "size": N} | null,
     "frontier": ["<hex>", ...], "checkpoint": "<signed note>", "leaves": K}

``frontier`` is the compact range of the tree at the previous checkpoint (one
hash per set bit of N), so the day's K leaves can be appended without the N
earlier ones. Then one line per leaf, in index order N..N+K-1:

* the canonical leaf bytes themselves (the line *is* what is hashed): a v2
  public leaf, or a v1 leaf (full exports and exports made before v2);
* ``{"dropped":"<hex leaf hash>","index":i}`` for an entry whose content
  retention dropped;
* ``{"index":i,"withheld":"<hex leaf hash>"}`` in a public export, for a v1
  leaf: its content (owner tag in the clear) is not public;
* ``{"leaf":{<v2 leaf>},"opening":{<opening>}}`` in a full export (the
  auditor's): the leaf hash is of the inner leaf's canonical bytes.

A ``public`` export never carries an opening; a ``full`` one withholds
nothing. Exports in the earlier format ``cloudsign-audit-day/1`` (no
``contents`` key, v1 leaves and dropped lines only) are still read.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import IO, Any, Final

from audit_chain.checkpoint import Checkpoint, parse_signed_note
from audit_chain.days import DEFAULT_UTC_OFFSET, format_offset, parse_day, parse_offset
from audit_chain.errors import AuditChainError, ExportError, LeafFormatError
from audit_chain.leaf import (
    CommittedLeaf,
    DroppedLeaf,
    EventLeaf,
    Leaf,
    LeafOpening,
    OpenedLeaf,
    WithheldLeaf,
    leaf_from_json_obj,
    leaf_hash,
    loads_strict,
    opening_from_json_obj,
)
from audit_chain.merkle import CompactRange

__all__ = [
    "CONTENTS_FULL",
    "CONTENTS_PUBLIC",
    "EXPORT_FORMAT",
    "LEGACY_EXPORT_FORMAT",
    "DayExportHeader",
    "DayExportReader",
    "ExportEntry",
    "ExportItem",
    "iter_day_export",
    "write_day_export",
]

EXPORT_FORMAT: Final = "cloudsign-audit-day/2"
#: Written before leaves had commitments; still read (and verified).
LEGACY_EXPORT_FORMAT: Final = "cloudsign-audit-day/1"
#: Public leaves only: v2 leaves without openings, v1 leaves as hashes.
CONTENTS_PUBLIC: Final = "public"
#: Everything: v2 leaves with their openings, v1 leaves in the clear (auditors).
CONTENTS_FULL: Final = "full"
_CONTENTS: Final = frozenset({CONTENTS_PUBLIC, CONTENTS_FULL})
#: A header holds two notes and at most 64 frontier hashes; it is never large.
MAX_HEADER_BYTES: Final = 64 * 1024
#: A leaf line is a leaf (bounded by leaf.MAX_LEAF_BYTES), or a v2 leaf and its
#: opening (bounded by leaf.MAX_OPENING_BYTES), plus its newline.
MAX_LINE_BYTES: Final = 8 * 1024
_LEGACY_HEADER_KEYS: Final = frozenset(
    {"format", "day", "utc_offset", "origin", "previous", "frontier", "checkpoint", "leaves"}
)
_HEADER_KEYS: Final = _LEGACY_HEADER_KEYS | {"contents"}

#: What the writer takes: a leaf of either version, a v2 leaf with its opening
#: (full exports), or a hash-only entry.
ExportItem = EventLeaf | CommittedLeaf | OpenedLeaf | DroppedLeaf | WithheldLeaf


def _unsigned_checkpoint(note: str, what: str) -> Checkpoint:
    try:
        return Checkpoint.from_body(parse_signed_note(note).body)
    except AuditChainError as e:
        raise ExportError(f"{what} is not a checkpoint note: {e.message}") from e


@dataclass(frozen=True)
class DayExportHeader:
    """First line of a day export. Validates its own internal consistency.

    Signatures are *not* checked here (that needs the log key); the verifier does it.
    """

    day: date
    origin: str
    previous_checkpoint: str | None
    frontier: tuple[bytes, ...]
    checkpoint: str
    utc_offset: timedelta = DEFAULT_UTC_OFFSET
    contents: str = CONTENTS_PUBLIC
    previous_size: int = field(init=False)
    leaf_count: int = field(init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.day, date):
            raise ExportError("day must be a date")
        if not isinstance(self.origin, str) or not self.origin:
            raise ExportError("origin must be a non-empty string")
        if self.contents not in _CONTENTS:
            raise ExportError(f"contents must be one of {sorted(_CONTENTS)}")
        object.__setattr__(self, "frontier", tuple(self.frontier))
        if self.previous_checkpoint is None:
            previous_size = 0
        else:
            previous = _unsigned_checkpoint(self.previous_checkpoint, "previous checkpoint")
            if previous.origin != self.origin:
                raise ExportError("previous checkpoint has another origin")
            previous_size = previous.size
        try:
            CompactRange(previous_size, self.frontier)
        except AuditChainError as e:
            raise ExportError(f"frontier does not fit the previous size: {e.message}") from e
        current = _unsigned_checkpoint(self.checkpoint, "checkpoint")
        if current.origin != self.origin:
            raise ExportError("checkpoint has another origin")
        if current.size < previous_size:
            raise ExportError("checkpoint is smaller than the previous checkpoint")
        object.__setattr__(self, "previous_size", previous_size)
        object.__setattr__(self, "leaf_count", current.size - previous_size)

    @property
    def day_text(self) -> str:
        return self.day.isoformat()

    @property
    def full(self) -> bool:
        return self.contents == CONTENTS_FULL

    def start_range(self) -> CompactRange:
        return CompactRange(self.previous_size, self.frontier)

    def unsigned_checkpoint(self) -> Checkpoint:
        return _unsigned_checkpoint(self.checkpoint, "checkpoint")

    def unsigned_previous_checkpoint(self) -> Checkpoint | None:
        if self.previous_checkpoint is None:
            return None
        return _unsigned_checkpoint(self.previous_checkpoint, "previous checkpoint")

    def to_json_obj(self) -> dict[str, Any]:
        return {
            "format": EXPORT_FORMAT,
            "contents": self.contents,
            "day": self.day_text,
            "utc_offset": format_offset(self.utc_offset),
            "origin": self.origin,
            "previous": None
            if self.previous_checkpoint is None
            else {"checkpoint": self.previous_checkpoint, "size": self.previous_size},
            "frontier": [h.hex() for h in self.frontier],
            "checkpoint": self.checkpoint,
            "leaves": self.leaf_count,
        }

    def to_line(self) -> bytes:
        return (
            json.dumps(self.to_json_obj(), sort_keys=True, separators=(",", ":")).encode() + b"\n"
        )

    @classmethod
    def from_json_obj(cls, obj: Any) -> DayExportHeader:
        if not isinstance(obj, dict):
            raise ExportError("header is not a JSON object")
        legacy = obj.get("format") == LEGACY_EXPORT_FORMAT
        keys = _LEGACY_HEADER_KEYS if legacy else _HEADER_KEYS
        if not legacy and obj.get("format") != EXPORT_FORMAT:
            raise ExportError(f"unsupported export format {obj.get('format')!r}")
        if set(obj) != keys:
            raise ExportError(f"header keys must be {sorted(keys)}")
        contents = CONTENTS_PUBLIC if legacy else obj["contents"]
        if not isinstance(contents, str) or contents not in _CONTENTS:
            raise ExportError(f"contents must be one of {sorted(_CONTENTS)}")
        try:
            day = parse_day(obj["day"])
            offset = parse_offset(obj["utc_offset"])
        except AuditChainError as e:
            raise ExportError(e.message) from e
        previous = obj["previous"]
        if previous is not None and (
            not isinstance(previous, dict) or set(previous) != {"checkpoint", "size"}
        ):
            raise ExportError("previous must be null or {checkpoint, size}")
        frontier = obj["frontier"]
        if not isinstance(frontier, list) or len(frontier) > 64:
            raise ExportError("frontier must be a list of at most 64 hashes")
        try:
            hashes = tuple(bytes.fromhex(h) for h in frontier)
        except (TypeError, ValueError) as e:
            raise ExportError("frontier hashes must be hex") from e
        for name in ("origin", "checkpoint"):
            if not isinstance(obj[name], str):
                raise ExportError(f"{name} must be a string")
        if previous is not None and not isinstance(previous["checkpoint"], str):
            raise ExportError("previous checkpoint must be a string")
        header = cls(
            day=day,
            origin=obj["origin"],
            previous_checkpoint=None if previous is None else previous["checkpoint"],
            frontier=hashes,
            checkpoint=obj["checkpoint"],
            utc_offset=offset,
            contents=contents,
        )
        stated_previous = 0 if previous is None else previous["size"]
        if stated_previous != header.previous_size or isinstance(stated_previous, bool):
            raise ExportError("previous size does not match the previous checkpoint")
        if obj["leaves"] != header.leaf_count or isinstance(obj["leaves"], bool):
            raise ExportError("leaf count does not match the two checkpoints")
        return header


@dataclass(frozen=True)
class ExportEntry:
    """One leaf line as read: its index, leaf hash, content if any, and (full
    exports) the opening of a v2 leaf. ``leaf`` is None for a dropped or
    withheld entry; ``withheld`` tells which."""

    index: int
    leaf_hash: bytes
    leaf: Leaf | None
    line_number: int
    opening: LeafOpening | None = None
    withheld: bool = False


def _hash_only_line(key: str, index: int, h: bytes) -> bytes:
    # Sorted keys: "dropped" < "index" < "withheld".
    if key == "dropped":
        return b'{"dropped":"' + h.hex().encode() + b'","index":' + str(index).encode() + b"}\n"
    return b'{"index":' + str(index).encode() + b',"withheld":"' + h.hex().encode() + b'"}\n'


def _entry_line(entry: ExportItem) -> bytes:
    if isinstance(entry, EventLeaf | CommittedLeaf | OpenedLeaf):
        return entry.to_bytes() + b"\n"
    if isinstance(entry, DroppedLeaf):
        return _hash_only_line("dropped", entry.index, entry.hash)
    if isinstance(entry, WithheldLeaf):
        return _hash_only_line("withheld", entry.index, entry.hash)
    raise ExportError(f"cannot export {type(entry).__name__}")


def _check_contents(header: DayExportHeader, entry: ExportItem) -> None:
    """Refuse an entry that does not belong in this kind of export: a public
    export carries no opening, a full one withholds nothing."""
    if header.full:
        if isinstance(entry, WithheldLeaf):
            raise ExportError(f"entry {entry.index}: a full export withholds no content")
        if isinstance(entry, CommittedLeaf):
            raise ExportError(f"entry {entry.index}: a full export needs the leaf's opening")
    elif isinstance(entry, OpenedLeaf):
        raise ExportError(f"entry {entry.index}: an opening must not go into a public export")


def iter_day_export(header: DayExportHeader, entries: Iterable[ExportItem]) -> Iterator[bytes]:
    """Yield the export's lines (bytes, newline-terminated).

    Checks as it goes that entries are contiguous from the previous size and
    fit the export's contents, and, after the last line, that they rebuild the
    checkpoint's root — a mismatch is a bug in the caller and raises
    :class:`ExportError` rather than publishing a bad file.
    """
    yield header.to_line()
    rng = header.start_range()
    expected = header.previous_size
    end = header.previous_size + header.leaf_count
    for entry in entries:
        if entry.index != expected:
            raise ExportError(f"entry index {entry.index}, expected {expected}")
        if expected >= end:
            raise ExportError("more entries than the checkpoint covers")
        _check_contents(header, entry)
        rng.append(entry.leaf_hash())
        expected += 1
        yield _entry_line(entry)
    if expected != end:
        raise ExportError(f"{end - expected} entries missing before the checkpoint size")
    if rng.root() != header.unsigned_checkpoint().root_hash:
        raise ExportError("entries do not rebuild the checkpoint root hash")


def write_day_export(
    out: str | os.PathLike[str] | IO[bytes],
    header: DayExportHeader,
    entries: Iterable[ExportItem],
) -> None:
    """Write a day export to a binary stream, or atomically to a path."""
    if isinstance(out, str | os.PathLike):
        path = Path(out)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.writelines(iter_day_export(header, entries))
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return
    out.writelines(iter_day_export(header, entries))


class DayExportReader:
    """Streaming reader: header on open, then :meth:`entries` one line at a time.

    Every entry is validated (JSON, canonical form, index order); errors are
    :class:`ExportError` naming the line. It does not check roots or signatures.
    """

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        line = stream.readline(MAX_HEADER_BYTES + 1)
        if not line:
            raise ExportError("export is empty")
        if len(line) > MAX_HEADER_BYTES or not line.endswith(b"\n"):
            raise ExportError("export header line is too long or unterminated")
        try:
            obj = loads_strict(line)
        except LeafFormatError as e:
            raise ExportError(f"header is not valid JSON: {e.message}") from e
        self.header = DayExportHeader.from_json_obj(obj)
        #: A cloudsign-audit-day/1 export: v1 leaves and dropped lines only.
        self.legacy = obj.get("format") == LEGACY_EXPORT_FORMAT
        self._consumed = False

    def entries(self) -> Iterator[ExportEntry]:
        if self._consumed:
            raise ExportError("entries can be read only once")
        self._consumed = True
        expected = self.header.previous_size
        end = expected + self.header.leaf_count
        line_number = 1
        readline = self._stream.readline
        while True:
            line = readline(MAX_LINE_BYTES + 1)
            if not line:
                break
            line_number += 1
            if len(line) > MAX_LINE_BYTES or not line.endswith(b"\n"):
                raise ExportError(f"line {line_number}: too long or unterminated")
            if expected >= end:
                raise ExportError(
                    f"line {line_number}: more leaves than the checkpoint covers ({end})"
                )
            entry = self._parse(line[:-1], line_number)
            if entry.index != expected:
                raise ExportError(
                    f"line {line_number}: leaf index {entry.index}, expected {expected}"
                )
            expected += 1
            yield entry
        if expected != end:
            raise ExportError(
                f"export ends after leaf {expected - 1}; the checkpoint covers up to {end - 1}"
            )

    def _parse(self, data: bytes, line_number: int) -> ExportEntry:
        try:
            obj = loads_strict(data)
            if not isinstance(obj, dict):
                raise ExportError("a leaf line is a JSON object")
            for key, kind in (("dropped", DroppedLeaf), ("withheld", WithheldLeaf)):
                if key not in obj:
                    continue
                if set(obj) != {key, "index"} or not isinstance(obj[key], str):
                    raise ExportError(f"malformed {key} entry")
                if key == "withheld" and self.legacy:
                    raise ExportError("a cloudsign-audit-day/1 export withholds nothing")
                entry = kind(obj["index"], bytes.fromhex(obj[key]))
                if _entry_line(entry)[:-1] != data:
                    raise ExportError(f"{key} entry is not in canonical form")
                return ExportEntry(
                    entry.index, entry.hash, None, line_number, withheld=key == "withheld"
                )
            opening = None
            if "opening" in obj:
                if set(obj) != {"leaf", "opening"}:
                    raise ExportError("an opened entry has exactly the keys leaf and opening")
                if not self.header.full:
                    raise ExportError("a public export carries no opening")
                opening = opening_from_json_obj(obj["opening"])
                obj = obj["leaf"]
            leaf = leaf_from_json_obj(obj)
            if self.legacy and not isinstance(leaf, EventLeaf):
                raise ExportError("a cloudsign-audit-day/1 export holds v1 leaves only")
            encoded = leaf.to_bytes()
            if opening is not None:
                if not isinstance(leaf, CommittedLeaf):
                    raise ExportError("only a v2 leaf has an opening")
                line = b'{"leaf":' + encoded + b',"opening":' + opening.to_bytes() + b"}"
            else:
                line = encoded
            if line != data:
                raise LeafFormatError("leaf bytes are not in canonical form")
            return ExportEntry(leaf.index, leaf_hash(encoded), leaf, line_number, opening)
        except ValueError as e:
            raise ExportError(f"line {line_number}: {e}") from e
        except AuditChainError as e:
            raise ExportError(f"line {line_number}: {e.message}") from e
