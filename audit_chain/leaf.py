"""Canonical encoding of one audit event as a Merkle-tree leaf, in two versions.

This module owns the bytes that get hashed. The encoding is canonical JSON —
sorted keys, no whitespace, UTF-8, optional fields omitted rather than
``null`` — and the parsers accept only bytes that re-encode to themselves, so
one event has exactly one leaf hash.

* **v2** (:class:`CommittedLeaf`, what the service writes): the public leaf
  holds only what the auditor's day checks need — index, type, time — and a
  *commitment* to everything else::

      commitment = SHA-256(COMMITMENT_LABEL || salt || committed message)

  with a random 32-byte ``salt`` per leaf. The committed message is the
  canonical JSON of the whole event (the private part — owner tag, credential
  tag, document hash, extra — plus the leaf's own index, type and time, so
  one opening opens exactly one leaf). A :class:`LeafOpening` (the salt and
  the private part) lets whoever holds it check the commitment; without it
  the commitment is indistinguishable from random, so two leaves of one
  owner share nothing public beyond their type and day.
* **v1** (:class:`EventLeaf`): the whole event in the clear, owner tag
  included. Still parsed and verified — days anchored before v2 are made of
  such leaves and cannot be rewritten — but no longer written by the service,
  and a public export shows a v1 leaf as its hash only.

:class:`DroppedLeaf` (an entry whose content retention deleted) and
:class:`WithheldLeaf` (content kept but not public) carry only the leaf hash.

The owner is never in a leaf: the server uses ``owner_tag``, an HMAC of the
owner id under an HSM key, and in v2 even that is inside the commitment.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final

from audit_chain.errors import LeafFormatError, OpeningError

__all__ = [
    "COMMITMENT_LABEL",
    "LEAF_FORMAT_VERSION",
    "LEAF_V1",
    "LEAF_V2",
    "MAX_LEAF_BYTES",
    "SALT_BYTES",
    "CommittedLeaf",
    "DroppedLeaf",
    "EventLeaf",
    "EventType",
    "ExtraValue",
    "Leaf",
    "LeafOpening",
    "OpenedLeaf",
    "WithheldLeaf",
    "leaf_from_json_obj",
    "leaf_hash",
    "opening_from_json_obj",
    "parse_leaf",
    "parse_opening",
]

LEAF_V1: Final = 1
LEAF_V2: Final = 2
#: The version new leaves are written in.
LEAF_FORMAT_VERSION: Final = LEAF_V2
#: Upper bound on one encoded leaf (v1) or committed message (v2); a leaf is a
#: log line, not a document.
MAX_LEAF_BYTES: Final = 4096
#: An opening is the committed message's private part plus a hex salt.
MAX_OPENING_BYTES: Final = MAX_LEAF_BYTES + 128
MAX_EXTRA_ENTRIES: Final = 16
MAX_EXTRA_STRING: Final = 256
#: Integers in ``extra`` stay within what every JSON implementation reads exactly.
MAX_EXTRA_INT: Final = 2**53 - 1
MAX_INDEX: Final = 2**63 - 1
OWNER_TAG_SIZES: Final = range(16, 65)
CREDENTIAL_TAG_SIZES: Final = range(8, 65)
#: SHA-256, SHA-384, SHA-512 digests.
DOCUMENT_HASH_SIZES: Final = frozenset({32, 48, 64})
#: One fixed size: with a variable-length salt the boundary between salt and
#: message in the hashed bytes would be ambiguous.
SALT_BYTES: Final = 32
COMMITMENT_BYTES: Final = 32
#: Domain separation: a commitment is never a hash of anything else in the log.
COMMITMENT_LABEL: Final = b"cloudsign-audit-leaf-commitment/2\x00"
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
    # The mobile channel: bound devices and signing requests approved on them.
    DEVICE_BIND = "device.bind"
    DEVICE_REVOKE = "device.revoke"
    REQUEST_CREATE = "request.create"
    REQUEST_DECIDE = "request.decide"
    # HSM backup: the key ceremony, each custodian's share, archives, restores.
    KEY_CEREMONY = "key.ceremony"
    #: An owner key moved to a new master key at its first use after a rotation.
    KEY_REWRAP = "key.rewrap"
    BACKUP_SHARE = "backup.share"
    BACKUP_CREATE = "backup.create"
    BACKUP_RESTORE = "backup.restore"


def leaf_hash(leaf_bytes: bytes) -> bytes:
    """RFC 9162 leaf hash: SHA-256(0x00 || leaf bytes)."""
    return hashlib.sha256(_LEAF_PREFIX + leaf_bytes).digest()


# -- field checks shared by both versions and the opening ---------------------------


def _check_index(index: object) -> int:
    if isinstance(index, bool) or not isinstance(index, int):
        raise LeafFormatError("index must be an int")
    if not 0 <= index <= MAX_INDEX:
        raise LeafFormatError(f"index {index} out of range")
    return index


def _check_type(event_type: object) -> EventType:
    if not isinstance(event_type, str):
        raise LeafFormatError("event type must be a string")
    try:
        return EventType(event_type)
    except ValueError as e:
        raise LeafFormatError(f"unknown event type {event_type!r}") from e


def _check_time(time: object) -> datetime:
    if not isinstance(time, datetime) or time.tzinfo is None:
        raise LeafFormatError("time must be a timezone-aware datetime")
    utc = time.astimezone(UTC)
    if utc.year < 2000 or utc.year > 9999:
        raise LeafFormatError("time out of range")
    return utc


def _check_bytes(name: str, value: object, sizes: range | frozenset[int]) -> bytes:
    if not isinstance(value, bytes):
        raise LeafFormatError(f"{name} must be bytes, got {type(value).__name__}")
    if len(value) not in sizes:
        raise LeafFormatError(f"{name} has {len(value)} bytes, not an allowed size")
    return value


def _check_extra(extra: object) -> dict[str, ExtraValue]:
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


def _check_private(
    owner_tag: object, credential_tag: object, document_hash: object, extra: object
) -> MappingProxyType[str, ExtraValue]:
    """The checks of the private part (v1 leaf fields, v2 opening fields)."""
    _check_bytes("owner_tag", owner_tag, OWNER_TAG_SIZES)
    if credential_tag is not None:
        _check_bytes("credential_tag", credential_tag, CREDENTIAL_TAG_SIZES)
    if document_hash is not None:
        _check_bytes("document_hash", document_hash, DOCUMENT_HASH_SIZES)
    return MappingProxyType(_check_extra(extra))


def _check_document_type(event_type: EventType, document_hash: bytes | None) -> None:
    if document_hash is not None and event_type is not EventType.KEY_USE:
        raise LeafFormatError("document_hash is only allowed on key.use events")


def _format_time(t: datetime) -> str:
    # isoformat is C code and, with timespec, always prints six fraction digits.
    return t.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _event_obj(
    version: int,
    index: int,
    event_type: EventType,
    time: datetime,
    owner_tag: bytes,
    credential_tag: bytes | None,
    document_hash: bytes | None,
    extra: Mapping[str, ExtraValue],
) -> dict[str, Any]:
    """The whole event as a JSON object: a v1 leaf (a v2 committed message is
    the same object with ``"v": 2``, spliced by :class:`LeafOpening`)."""
    obj: dict[str, Any] = {
        "index": index,
        "owner": owner_tag.hex(),
        "time": _format_time(time),
        "type": event_type.value,
        "v": version,
    }
    if credential_tag is not None:
        obj["credential"] = credential_tag.hex()
    if document_hash is not None:
        obj["document"] = document_hash.hex()
    if extra:
        obj["extra"] = dict(extra)
    return obj


# -- v1: the whole event in the clear --------------------------------------------------


@dataclass(frozen=True, eq=True)
class EventLeaf:
    """A v1 leaf: one audit event with its content in the clear. Validates
    itself on construction.

    Kept so that days logged before v2 still parse and verify; the service
    writes :class:`CommittedLeaf` instead. ``time`` must be timezone-aware; it
    is stored in UTC. ``owner_tag`` is the server's HMAC of the owner id
    (16..64 bytes), ``credential_tag`` likewise for the credential.
    ``document_hash`` (32/48/64 bytes) is allowed only on ``key.use``: it is
    the digest that was signed.
    """

    index: int
    event_type: EventType
    time: datetime
    owner_tag: bytes
    credential_tag: bytes | None = None
    document_hash: bytes | None = None
    extra: Mapping[str, ExtraValue] = field(default_factory=dict)

    version = LEAF_V1

    def __post_init__(self) -> None:
        _check_index(self.index)
        event_type = _check_type(self.event_type)
        object.__setattr__(self, "event_type", event_type)
        object.__setattr__(self, "time", _check_time(self.time))
        extra = _check_private(self.owner_tag, self.credential_tag, self.document_hash, self.extra)
        _check_document_type(event_type, self.document_hash)
        object.__setattr__(self, "extra", extra)
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
        return _event_obj(
            LEAF_V1,
            self.index,
            self.event_type,
            self.time,
            self.owner_tag,
            self.credential_tag,
            self.document_hash,
            self.extra,
        )

    def to_bytes(self) -> bytes:
        """Canonical encoding: sorted keys, no whitespace, UTF-8, no trailing newline."""
        encoded: bytes = self.__dict__["_encoded"]
        return encoded

    def leaf_hash(self) -> bytes:
        """RFC 9162 leaf hash of :meth:`to_bytes`."""
        return leaf_hash(self.to_bytes())


# -- v2: public leaf, commitment, opening ------------------------------------------------


@dataclass(frozen=True)
class CommittedLeaf:
    """A v2 leaf: what is hashed and published. Index, type and time (the
    auditor's day boundaries and counts need them) and a 32-byte commitment to
    the rest of the event; see :class:`LeafOpening`."""

    index: int
    event_type: EventType
    time: datetime
    commitment: bytes

    version = LEAF_V2

    def __post_init__(self) -> None:
        _check_index(self.index)
        object.__setattr__(self, "event_type", _check_type(self.event_type))
        object.__setattr__(self, "time", _check_time(self.time))
        _check_bytes("commitment", self.commitment, frozenset({COMMITMENT_BYTES}))
        # Every field is ASCII with no character JSON escapes (hex, digits, the
        # event type's [a-z.], the fixed time format), so formatting the bytes
        # directly is the canonical encoding, at a fraction of json's cost
        # (a test checks it against the JSON encoder).
        encoded = b'{"commitment":"%s","index":%d,"time":"%s","type":"%s","v":2}' % (
            self.commitment.hex().encode(),
            self.index,
            _format_time(self.time).encode(),
            self.event_type.value.encode(),
        )
        object.__setattr__(self, "_encoded", encoded)

    def to_json_obj(self) -> dict[str, Any]:
        return {
            "commitment": self.commitment.hex(),
            "index": self.index,
            "time": _format_time(self.time),
            "type": self.event_type.value,
            "v": LEAF_V2,
        }

    def to_bytes(self) -> bytes:
        encoded: bytes = self.__dict__["_encoded"]
        return encoded

    def leaf_hash(self) -> bytes:
        return leaf_hash(self.to_bytes())


@dataclass(frozen=True, eq=True, repr=False)
class LeafOpening:
    """What opens a v2 leaf's commitment: the salt and the private part.

    Given to the event's owner (their own events) and to auditors (every
    event); never in a public export. With it, :meth:`check` proves that the
    public leaf commits to exactly this owner tag, credential tag, document
    hash and extra. The repr shows no value: an opening links its leaf to an
    owner tag, so it stays out of logs.
    """

    salt: bytes
    owner_tag: bytes
    credential_tag: bytes | None = None
    document_hash: bytes | None = None
    extra: Mapping[str, ExtraValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_bytes("salt", self.salt, frozenset({SALT_BYTES}))
        extra = _check_private(self.owner_tag, self.credential_tag, self.document_hash, self.extra)
        object.__setattr__(self, "extra", extra)
        # The keys before "owner" in sorted order (credential, document, extra),
        # encoded once: both the opening and every committed message are
        # spliced from it, with the remaining keys (all ASCII, nothing to
        # escape) formatted directly — a test checks both against the JSON
        # encoder.
        head_obj: dict[str, Any] = {}
        if self.credential_tag is not None:
            head_obj["credential"] = self.credential_tag.hex()
        if self.document_hash is not None:
            head_obj["document"] = self.document_hash.hex()
        if extra:
            head_obj["extra"] = dict(extra)
        head = _canonical(head_obj)[1:-1] + b"," if head_obj else b""
        object.__setattr__(self, "_head", head)
        encoded = b'{%s"owner":"%s","salt":"%s"}' % (
            head,
            self.owner_tag.hex().encode(),
            self.salt.hex().encode(),
        )
        if len(encoded) > MAX_OPENING_BYTES:
            raise LeafFormatError(f"encoded opening exceeds {MAX_OPENING_BYTES} bytes")
        object.__setattr__(self, "_encoded", encoded)

    @classmethod
    def new(
        cls,
        owner_tag: bytes,
        credential_tag: bytes | None = None,
        document_hash: bytes | None = None,
        extra: Mapping[str, ExtraValue] | None = None,
    ) -> LeafOpening:
        """An opening with a fresh random salt."""
        return cls(
            secrets.token_bytes(SALT_BYTES), owner_tag, credential_tag, document_hash, extra or {}
        )

    def __hash__(self) -> int:
        return hash(self.to_bytes())

    def __repr__(self) -> str:
        return (
            f"LeafOpening(credential={self.credential_tag is not None}, "
            f"document={self.document_hash is not None}, extra={len(self.extra)} keys)"
        )

    def to_json_obj(self) -> dict[str, Any]:
        obj: dict[str, Any] = {"owner": self.owner_tag.hex(), "salt": self.salt.hex()}
        if self.credential_tag is not None:
            obj["credential"] = self.credential_tag.hex()
        if self.document_hash is not None:
            obj["document"] = self.document_hash.hex()
        if self.extra:
            obj["extra"] = dict(self.extra)
        return obj

    def to_bytes(self) -> bytes:
        encoded: bytes = self.__dict__["_encoded"]
        return encoded

    def committed_message(self, index: int, event_type: EventType, time: datetime) -> bytes:
        """The canonical JSON the commitment covers: the whole event, ``"v": 2``."""
        index = _check_index(index)
        event_type = _check_type(event_type)
        _check_document_type(event_type, self.document_hash)
        head: bytes = self.__dict__["_head"]
        message = b'{%s"index":%d,"owner":"%s","time":"%s","type":"%s","v":2}' % (
            head,
            index,
            self.owner_tag.hex().encode(),
            _format_time(_check_time(time)).encode(),
            event_type.value.encode(),
        )
        if len(message) > MAX_LEAF_BYTES:
            raise LeafFormatError(f"committed message exceeds {MAX_LEAF_BYTES} bytes")
        return message

    def commitment(self, index: int, event_type: EventType, time: datetime) -> bytes:
        """SHA-256(COMMITMENT_LABEL || salt || committed message)."""
        message = self.committed_message(index, event_type, time)
        return hashlib.sha256(COMMITMENT_LABEL + self.salt + message).digest()

    def seal(self, index: int, event_type: EventType, time: datetime) -> CommittedLeaf:
        """The public leaf this opening opens, at ``index``."""
        return CommittedLeaf(index, event_type, time, self.commitment(index, event_type, time))

    def check(self, leaf: CommittedLeaf) -> None:
        """Raise :class:`OpeningError` unless this opens ``leaf``'s commitment."""
        if not isinstance(leaf, CommittedLeaf):
            raise OpeningError(f"a v{getattr(leaf, 'version', '?')} leaf has no commitment to open")
        try:
            expected = self.commitment(leaf.index, leaf.event_type, leaf.time)
        except LeafFormatError as e:
            raise OpeningError(f"the opening does not fit leaf {leaf.index}: {e.message}") from e
        if not hmac.compare_digest(expected, leaf.commitment):
            raise OpeningError(f"the opening does not match the commitment of leaf {leaf.index}")

    def opens(self, leaf: CommittedLeaf) -> bool:
        try:
            self.check(leaf)
        except OpeningError:
            return False
        return True


@dataclass(frozen=True)
class OpenedLeaf:
    """A v2 leaf with its opening, checked on construction: one line of a
    full (auditor's) day export."""

    leaf: CommittedLeaf
    opening: LeafOpening

    def __post_init__(self) -> None:
        self.opening.check(self.leaf)

    @classmethod
    def seal(
        cls, index: int, event_type: EventType, time: datetime, opening: LeafOpening
    ) -> OpenedLeaf:
        """The leaf `opening` opens at `index`, with it (sealed here, so not
        checked a second time)."""
        opened = object.__new__(cls)
        object.__setattr__(opened, "leaf", opening.seal(index, event_type, time))
        object.__setattr__(opened, "opening", opening)
        return opened

    @property
    def index(self) -> int:
        return self.leaf.index

    def leaf_hash(self) -> bytes:
        return self.leaf.leaf_hash()

    def to_json_obj(self) -> dict[str, Any]:
        return {"leaf": self.leaf.to_json_obj(), "opening": self.opening.to_json_obj()}

    def to_bytes(self) -> bytes:
        """Canonical JSON of ``{"leaf": …, "opening": …}`` (the leaf hash is of
        the inner leaf's bytes only)."""
        return b'{"leaf":' + self.leaf.to_bytes() + b',"opening":' + self.opening.to_bytes() + b"}"


#: A leaf as parsed: either version.
Leaf = EventLeaf | CommittedLeaf


# -- entries that keep only the hash ---------------------------------------------------


def _check_hash_only(index: object, h: object, what: str) -> None:
    _check_index(index)
    if not isinstance(h, bytes) or len(h) != 32:
        raise LeafFormatError(f"a {what} leaf needs its 32-byte leaf hash")


@dataclass(frozen=True)
class DroppedLeaf:
    """An entry whose content retention deleted; the leaf hash is all that is kept."""

    index: int
    hash: bytes

    def __post_init__(self) -> None:
        _check_hash_only(self.index, self.hash, "dropped")

    def leaf_hash(self) -> bytes:
        return self.hash


@dataclass(frozen=True)
class WithheldLeaf:
    """An entry whose content exists but is not public (a v1 leaf, which
    carries its owner tag in the clear, in a public export): only its hash."""

    index: int
    hash: bytes

    def __post_init__(self) -> None:
        _check_hash_only(self.index, self.hash, "withheld")

    def leaf_hash(self) -> bytes:
        return self.hash


# -- strict JSON -------------------------------------------------------------------------

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


# -- parsing -----------------------------------------------------------------------------

_V1_REQUIRED = frozenset({"index", "owner", "time", "type", "v"})
_PRIVATE_OPTIONAL = frozenset({"credential", "document", "extra"})
_V2_KEYS = frozenset({"commitment", "index", "time", "type", "v"})
_OPENING_REQUIRED = frozenset({"owner", "salt"})


def _hex_field(obj: Mapping[str, Any], key: str) -> bytes:
    value = obj[key]
    if not isinstance(value, str) or not _HEX.fullmatch(value):
        raise LeafFormatError(f"{key} must be lowercase hex")
    return bytes.fromhex(value)


def _parse_time(value: object) -> datetime:
    if not isinstance(value, str) or not _TIME.fullmatch(value):
        raise LeafFormatError("time must be YYYY-MM-DDTHH:MM:SS.ffffffZ")
    try:
        # The regex pinned the shape; fromisoformat (C code) checks the calendar.
        return datetime.fromisoformat(value[:-1]).replace(tzinfo=UTC)
    except ValueError as e:
        raise LeafFormatError(f"time {value!r} is not a valid instant") from e


def _check_keys(obj: Mapping[str, Any], required: frozenset[str], optional: frozenset[str]) -> None:
    keys = set(obj)
    if missing := required - keys:
        raise LeafFormatError(f"lacks {sorted(missing)}")
    if unknown := keys - required - optional:
        raise LeafFormatError(f"has unknown keys {sorted(unknown)}")


def _extra_field(obj: Mapping[str, Any]) -> Any:
    extra = obj.get("extra", {})
    if "extra" in obj and (not isinstance(extra, dict) or not extra):
        # An empty extra is written by omission; accepting {} would give two encodings.
        raise LeafFormatError("extra must be a non-empty object when present")
    return extra


def leaf_from_json_obj(obj: Any) -> Leaf:
    """Build a leaf of either version from its JSON object, validating every field."""
    if not isinstance(obj, dict):
        raise LeafFormatError("a leaf must be a JSON object")
    version = obj.get("v")
    if isinstance(version, bool) or version not in (LEAF_V1, LEAF_V2):
        raise LeafFormatError(f"unsupported leaf version {version!r}")
    if version == LEAF_V2:
        if set(obj) != _V2_KEYS:
            raise LeafFormatError(f"a v2 leaf has exactly the keys {sorted(_V2_KEYS)}")
        return CommittedLeaf(
            index=obj["index"],
            event_type=obj["type"],
            time=_parse_time(obj["time"]),
            commitment=_hex_field(obj, "commitment"),
        )
    try:
        _check_keys(obj, _V1_REQUIRED, _PRIVATE_OPTIONAL)
    except LeafFormatError as e:
        raise LeafFormatError(f"leaf {e.message}") from e
    return EventLeaf(
        index=obj["index"],
        event_type=obj["type"],
        time=_parse_time(obj["time"]),
        owner_tag=_hex_field(obj, "owner"),
        credential_tag=_hex_field(obj, "credential") if "credential" in obj else None,
        document_hash=_hex_field(obj, "document") if "document" in obj else None,
        extra=_extra_field(obj),
    )


def opening_from_json_obj(obj: Any) -> LeafOpening:
    """Build a :class:`LeafOpening` from its JSON object, validating every field."""
    if not isinstance(obj, dict):
        raise LeafFormatError("an opening must be a JSON object")
    try:
        _check_keys(obj, _OPENING_REQUIRED, _PRIVATE_OPTIONAL)
    except LeafFormatError as e:
        raise LeafFormatError(f"opening {e.message}") from e
    return LeafOpening(
        salt=_hex_field(obj, "salt"),
        owner_tag=_hex_field(obj, "owner"),
        credential_tag=_hex_field(obj, "credential") if "credential" in obj else None,
        document_hash=_hex_field(obj, "document") if "document" in obj else None,
        extra=_extra_field(obj),
    )


def _bounded(data: object, limit: int, what: str) -> bytes:
    if not isinstance(data, bytes | bytearray):
        raise LeafFormatError(f"{what} data must be bytes")
    if len(data) > limit:
        raise LeafFormatError(f"{what} exceeds {limit} bytes")
    return bytes(data)


def parse_leaf(data: bytes) -> Leaf:
    """Parse canonical leaf bytes (v1 or v2); refuse anything not exactly canonical."""
    data = _bounded(data, MAX_LEAF_BYTES, "leaf")
    leaf = leaf_from_json_obj(loads_strict(data))
    if leaf.to_bytes() != data:
        raise LeafFormatError("leaf bytes are not in canonical form")
    return leaf


def parse_opening(data: bytes) -> LeafOpening:
    """Parse canonical opening bytes; refuse anything not exactly canonical."""
    data = _bounded(data, MAX_OPENING_BYTES, "opening")
    opening = opening_from_json_obj(loads_strict(data))
    if opening.to_bytes() != data:
        raise LeafFormatError("opening bytes are not in canonical form")
    return opening
