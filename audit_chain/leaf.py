"""Canonical encoding of one audit event as a Merkle-tree leaf.

This module owns the bytes that get hashed: :class:`EventLeaf` (an event that
still has its content) and :class:`DroppedLeaf` (an event whose content was
deleted by retention; only its leaf hash survives). The encoding is canonical
JSON — sorted keys, no whitespace, UTF-8, optional fields omitted rather than
``null`` — and :func:`parse_leaf` accepts only bytes that re-encode to
themselves, so one event has exactly one leaf hash.

The owner is never in a leaf: the server puts ``owner_tag`` there, an HMAC of
the owner id under an HSM key, so a published export reveals nobody while a
citizen who is given their tag can find and prove their own events.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final

from audit_chain.errors import LeafFormatError

__all__ = [
    "LEAF_FORMAT_VERSION",
    "MAX_LEAF_BYTES",
    "DroppedLeaf",
    "EventLeaf",
    "EventType",
    "ExtraValue",
    "leaf_hash",
    "parse_leaf",
]

LEAF_FORMAT_VERSION: Final = 1
#: Upper bound on one encoded leaf; a leaf is a log line, not a document.
MAX_LEAF_BYTES: Final = 4096
MAX_EXTRA_ENTRIES: Final = 16
MAX_EXTRA_STRING: Final = 256
#: Integers in ``extra`` stay within what every JSON implementation reads exactly.
MAX_EXTRA_INT: Final = 2**53 - 1
MAX_INDEX: Final = 2**63 - 1
OWNER_TAG_SIZES: Final = range(16, 65)
CREDENTIAL_TAG_SIZES: Final = range(8, 65)
#: SHA-256, SHA-384, SHA-512 digests.
DOCUMENT_HASH_SIZES: Final = frozenset({32, 48, 64})
_EXTRA_KEY = re.compile(r"[a-z][a-z0-9_.-]{0,31}")
_HEX = re.compile(r"(?:[0-9a-f]{2})+")
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
_LEAF_PREFIX: Final = b"\x00"

ExtraValue = str | int | bool | None


class EventType(StrEnum):
    """What happened. The service logs every key creation, use and destruction."""

    KEY_CREATE = "key.create"
    KEY_USE = "key.use"
    KEY_DESTROY = "key.destroy"
    CERT_ISSUE = "cert.issue"
    CERT_REVOKE = "cert.revoke"
    AUTH_FAILURE = "auth.failure"
    CREDENTIAL_LOCK = "credential.lock"
    CONSENT_RECORD = "consent.record"
    FACE_ENROL = "face.enrol"
    ACCOUNT_DELETE = "account.delete"
    NOTICE_PUBLISH = "notice.publish"
    ANCHOR = "anchor"
    # Who may sign: identity proofing, accounts, factors, operators.
    ACCOUNT_CREATE = "account.create"
    IDENTITY_PROOF = "identity.proof"
    ACTIVATION_ISSUE = "activation.issue"
    ACTIVATION_USE = "activation.use"
    FACTOR_CHANGE = "factor.change"
    LOCK = "lock"
    OPERATOR_CREATE = "operator.create"
    OPERATOR_SIGNIN = "operator.signin"
    OPERATOR_ACTION = "operator.action"


def leaf_hash(leaf_bytes: bytes) -> bytes:
    """RFC 9162 leaf hash: SHA-256(0x00 || leaf bytes)."""
    return hashlib.sha256(_LEAF_PREFIX + leaf_bytes).digest()


def _check_bytes(name: str, value: object, sizes: range | frozenset[int]) -> bytes:
    if not isinstance(value, bytes):
        raise LeafFormatError(f"{name} must be bytes, got {type(value).__name__}")
    if len(value) not in sizes:
        raise LeafFormatError(f"{name} has {len(value)} bytes, not an allowed size")
    return value


def _check_extra(extra: Mapping[str, ExtraValue]) -> dict[str, ExtraValue]:
    if not isinstance(extra, Mapping):
        raise LeafFormatError("extra must be a mapping")
    if len(extra) > MAX_EXTRA_ENTRIES:
        raise LeafFormatError(f"extra has more than {MAX_EXTRA_ENTRIES} entries")
    out: dict[str, ExtraValue] = {}
    for key, value in extra.items():
        if not isinstance(key, str) or not _EXTRA_KEY.fullmatch(key):
            raise LeafFormatError(f"extra key {key!r} is not [a-z][a-z0-9_.-]{{0,31}}")
        if isinstance(value, bool) or value is None:
            pass
        elif isinstance(value, int):
            if abs(value) > MAX_EXTRA_INT:
                raise LeafFormatError(f"extra[{key!r}] integer out of range")
        elif isinstance(value, str):
            if len(value) > MAX_EXTRA_STRING:
                raise LeafFormatError(f"extra[{key!r}] longer than {MAX_EXTRA_STRING}")
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as e:
                raise LeafFormatError(f"extra[{key!r}] is not valid Unicode") from e
        else:
            # Floats are refused on purpose: their JSON text is not canonical.
            raise LeafFormatError(f"extra[{key!r}] has unsupported type {type(value).__name__}")
        out[key] = value
    return out


def _format_time(t: datetime) -> str:
    # isoformat is C code and, with timespec, always prints six fraction digits.
    return t.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


@dataclass(frozen=True, eq=True)
class EventLeaf:
    """One audit event, as logged. Validates itself on construction.

    ``time`` must be timezone-aware; it is stored in UTC. ``owner_tag`` is the
    server's HMAC of the owner id (16..64 bytes), ``credential_tag`` likewise
    for the credential. ``document_hash`` (32/48/64 bytes) is allowed only on
    ``key.use``: it is the digest that was signed.
    """

    index: int
    event_type: EventType
    time: datetime
    owner_tag: bytes
    credential_tag: bytes | None = None
    document_hash: bytes | None = None
    extra: Mapping[str, ExtraValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.index, bool) or not isinstance(self.index, int):
            raise LeafFormatError("index must be an int")
        if not 0 <= self.index <= MAX_INDEX:
            raise LeafFormatError(f"index {self.index} out of range")
        try:
            event_type = EventType(self.event_type)
        except ValueError as e:
            raise LeafFormatError(f"unknown event type {self.event_type!r}") from e
        object.__setattr__(self, "event_type", event_type)
        if not isinstance(self.time, datetime) or self.time.tzinfo is None:
            raise LeafFormatError("time must be a timezone-aware datetime")
        utc = self.time.astimezone(UTC)
        if utc.year < 2000 or utc.year > 9999:
            raise LeafFormatError("time out of range")
        object.__setattr__(self, "time", utc)
        _check_bytes("owner_tag", self.owner_tag, OWNER_TAG_SIZES)
        if self.credential_tag is not None:
            _check_bytes("credential_tag", self.credential_tag, CREDENTIAL_TAG_SIZES)
        if self.document_hash is not None:
            if event_type is not EventType.KEY_USE:
                raise LeafFormatError("document_hash is only allowed on key.use events")
            _check_bytes("document_hash", self.document_hash, DOCUMENT_HASH_SIZES)
        object.__setattr__(self, "extra", MappingProxyType(_check_extra(self.extra)))
        # Encode once: the canonical bytes are needed for hashing and export anyway.
        encoded = _canonical(self.to_json_obj())
        if len(encoded) > MAX_LEAF_BYTES:
            raise LeafFormatError(f"encoded leaf exceeds {MAX_LEAF_BYTES} bytes")
        object.__setattr__(self, "_encoded", encoded)

    def __hash__(self) -> int:
        # The generated hash would fail on the mapping in ``extra``; the canonical
        # bytes identify the leaf exactly.
        return hash(self.to_bytes())

    def to_json_obj(self) -> dict[str, Any]:
        """The leaf as a JSON object (the canonical form before serialisation)."""
        obj: dict[str, Any] = {
            "index": self.index,
            "owner": self.owner_tag.hex(),
            "time": _format_time(self.time),
            "type": self.event_type.value,
            "v": LEAF_FORMAT_VERSION,
        }
        if self.credential_tag is not None:
            obj["credential"] = self.credential_tag.hex()
        if self.document_hash is not None:
            obj["document"] = self.document_hash.hex()
        if self.extra:
            obj["extra"] = dict(self.extra)
        return obj

    def to_bytes(self) -> bytes:
        """Canonical encoding: sorted keys, no whitespace, UTF-8, no trailing newline."""
        encoded: bytes = self.__dict__["_encoded"]
        return encoded

    def leaf_hash(self) -> bytes:
        """RFC 9162 leaf hash of :meth:`to_bytes`."""
        return leaf_hash(self.to_bytes())


@dataclass(frozen=True)
class DroppedLeaf:
    """An entry whose content retention deleted; the leaf hash is all that is kept."""

    index: int
    hash: bytes

    def __post_init__(self) -> None:
        if isinstance(self.index, bool) or not isinstance(self.index, int):
            raise LeafFormatError("index must be an int")
        if not 0 <= self.index <= MAX_INDEX:
            raise LeafFormatError(f"index {self.index} out of range")
        if not isinstance(self.hash, bytes) or len(self.hash) != 32:
            raise LeafFormatError("a dropped leaf needs its 32-byte leaf hash")

    def leaf_hash(self) -> bytes:
        return self.hash


_ENCODER: Final = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def _canonical(obj: Mapping[str, Any]) -> bytes:
    try:
        return _ENCODER.encode(obj).encode("utf-8")
    except (ValueError, TypeError, UnicodeEncodeError) as e:
        raise LeafFormatError(f"leaf cannot be encoded: {e}") from e


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise LeafFormatError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _refuse_float(text: str) -> Any:
    raise LeafFormatError(f"floating-point number {text!r} is not allowed")


def _refuse_constant(text: str) -> Any:
    raise LeafFormatError(f"{text} is not allowed")


_DECODER: Final = json.JSONDecoder(
    object_pairs_hook=_no_duplicates, parse_float=_refuse_float, parse_constant=_refuse_constant
)


def loads_strict(data: bytes | str) -> Any:
    """json.loads refusing duplicate keys, floats and NaN/Infinity."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
        return _DECODER.decode(text)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise LeafFormatError(f"not valid JSON: {e}") from e


_REQUIRED = frozenset({"index", "owner", "time", "type", "v"})
_OPTIONAL = frozenset({"credential", "document", "extra"})


def _hex_field(obj: Mapping[str, Any], key: str) -> bytes:
    value = obj[key]
    if not isinstance(value, str) or not _HEX.fullmatch(value):
        raise LeafFormatError(f"{key} must be lowercase hex")
    return bytes.fromhex(value)


def leaf_from_json_obj(obj: Any) -> EventLeaf:
    """Build an :class:`EventLeaf` from its JSON object, validating every field."""
    if not isinstance(obj, dict):
        raise LeafFormatError("a leaf must be a JSON object")
    keys = set(obj)
    if missing := _REQUIRED - keys:
        raise LeafFormatError(f"leaf lacks {sorted(missing)}")
    if unknown := keys - _REQUIRED - _OPTIONAL:
        raise LeafFormatError(f"leaf has unknown keys {sorted(unknown)}")
    if obj["v"] != LEAF_FORMAT_VERSION or isinstance(obj["v"], bool):
        raise LeafFormatError(f"unsupported leaf version {obj['v']!r}")
    time_text = obj["time"]
    if not isinstance(time_text, str) or not _TIME.fullmatch(time_text):
        raise LeafFormatError("time must be YYYY-MM-DDTHH:MM:SS.ffffffZ")
    try:
        # The regex pinned the shape; fromisoformat (C code) checks the calendar.
        time = datetime.fromisoformat(time_text[:-1]).replace(tzinfo=UTC)
    except ValueError as e:
        raise LeafFormatError(f"time {time_text!r} is not a valid instant") from e
    extra = obj.get("extra", {})
    if "extra" in obj and (not isinstance(extra, dict) or not extra):
        # An empty extra is written by omission; accepting {} would give two encodings.
        raise LeafFormatError("extra must be a non-empty object when present")
    return EventLeaf(
        index=obj["index"],
        event_type=obj["type"],
        time=time,
        owner_tag=_hex_field(obj, "owner"),
        credential_tag=_hex_field(obj, "credential") if "credential" in obj else None,
        document_hash=_hex_field(obj, "document") if "document" in obj else None,
        extra=extra,
    )


def parse_leaf(data: bytes) -> EventLeaf:
    """Parse canonical leaf bytes; refuse anything that is not exactly canonical."""
    if not isinstance(data, bytes | bytearray):
        raise LeafFormatError("leaf data must be bytes")
    data = bytes(data)
    if len(data) > MAX_LEAF_BYTES:
        raise LeafFormatError(f"leaf exceeds {MAX_LEAF_BYTES} bytes")
    leaf = leaf_from_json_obj(loads_strict(data))
    if leaf.to_bytes() != data:
        raise LeafFormatError("leaf bytes are not in canonical form")
    return leaf
