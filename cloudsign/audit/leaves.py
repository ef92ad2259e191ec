"""From an `events` row to the canonical leaf the log hashes.

This module owns the mapping: which event fields go into a leaf and how —
the owner as an HSM keyed hash (HMAC-SHA256 under `cloudsign-hmac-audit-owner`,
never the id), the credential likewise (domain-separated, 16 bytes), the
event's own time and data as `extra`, the signed digest of a `key.use`.

Leaves are v2 (`audit_chain.CommittedLeaf`): the public leaf is index, type,
time and a commitment; everything above goes into its opening, under a
random salt drawn once per leaf (`new_salt`) and stored beside it in
`log_leaves.salt`. Given the event row and that salt the mapping is
deterministic, so a leaf and its opening can be re-derived at any time (the
day export does, to expose edits to either table, and the owner's and the
auditor's views do, to hand out openings). `build_v1_leaf` re-derives the
leaves logged before v2 (rows without a salt) the same way.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from audit_chain import EventLeaf, LeafOpening, OpenedLeaf
from audit_chain.leaf import SALT_BYTES, ExtraValue
from hsm_bridge import KeyedHasher

OWNER_TAG_PURPOSE: Final = "audit-owner"
#: Tag of events without an owner (e.g. an authentication failure for an unknown login).
ANONYMOUS_OWNER: Final = b""
CREDENTIAL_TAG_PREFIX: Final = b"credential\x00"
CREDENTIAL_TAG_BYTES: Final = 16
#: `data` keys that carry the signed digest of a `key.use` event (hex).
DOCUMENT_KEYS: Final = ("document_hash", "document_sha256", "digest")
OCCURRED_AT_KEY: Final = "occurred_at"
MAX_DATA_KEYS: Final = 15  # the leaf allows 16 extra keys; one is occurred_at
MAX_STRING: Final = 256
MAX_INT: Final = 2**53 - 1
OWNER_PLACEHOLDER: Final = "(owner)"
_KEY_OK = re.compile(r"[a-z][a-z0-9_.-]{0,31}")
_KEY_BAD_CHARS = re.compile(r"[^a-z0-9_.-]")
_HEX = re.compile(r"(?:[0-9a-f]{2})+")
_TAG_CACHE_MAX: Final = 200_000


@dataclass(frozen=True)
class EventRow:
    """The fields of an `events` row a leaf is built from."""

    seq: int
    event_type: str
    occurred_at: datetime
    owner_id: str | None
    credential_id: str | None
    data: Mapping[str, Any]

    @classmethod
    def from_mapping(cls, row: Any) -> EventRow:
        data = row["data"]
        if isinstance(data, str):  # a JSON column read back raw by some drivers
            data = json.loads(data)
        return cls(
            seq=int(row["seq"]),
            event_type=str(row["event_type"]),
            occurred_at=row["occurred_at"],
            owner_id=row["owner_id"],
            credential_id=row["credential_id"],
            data=data if isinstance(data, Mapping) else {"data": data},
        )


class TagMaker:
    """Owner and credential tags from the HSM, memoised per process.

    The cache only saves HSM round trips. It maps ids to tags (which v2 leaves
    keep inside their commitments), so it is never logged or exported.
    """

    def __init__(self, bridge: KeyedHasher) -> None:
        self._bridge = bridge
        self._cache: dict[bytes, bytes] = {}

    def __repr__(self) -> str:
        return f"TagMaker(cached={len(self._cache)})"

    async def _hmac(self, data: bytes) -> bytes:
        tag = self._cache.get(data)
        if tag is None:
            tag = await self._bridge.hmac_sha256(OWNER_TAG_PURPOSE, data)
            if len(self._cache) >= _TAG_CACHE_MAX:
                self._cache.clear()
            self._cache[data] = tag
        return tag

    async def owner_tag(self, owner_id: str | None) -> bytes:
        return await self._hmac(ANONYMOUS_OWNER if owner_id is None else owner_id.encode())

    async def credential_tag(self, credential_id: str | None) -> bytes | None:
        if credential_id is None:
            return None
        tag = await self._hmac(CREDENTIAL_TAG_PREFIX + credential_id.encode())
        return tag[:CREDENTIAL_TAG_BYTES]

    async def tags_for(self, event: EventRow) -> tuple[bytes, bytes | None]:
        return await self.owner_tag(event.owner_id), await self.credential_tag(event.credential_id)


def _extra_key(key: str) -> str:
    k = _KEY_BAD_CHARS.sub("_", key.lower())
    if not k or not k[0].isalpha() or not k.isascii():
        k = "x" + k
    return k[:32]


def _extra_value(value: Any, owner_id: str | None) -> ExtraValue:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if abs(value) <= MAX_INT else str(value)
    if isinstance(value, str):
        text = value
    else:
        # Floats, lists, objects: their compact JSON text (never a float in a leaf).
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    if owner_id and owner_id in text:
        # The owner id is never published, even if a caller put it in `data`.
        text = text.replace(owner_id, OWNER_PLACEHOLDER)
    if len(text) > MAX_STRING:
        text = "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return text


def _document_hash(event: EventRow) -> bytes | None:
    if event.event_type != "key.use":
        return None
    for key in DOCUMENT_KEYS:
        value = event.data.get(key)
        if isinstance(value, str) and _HEX.fullmatch(value.lower()):
            digest = bytes.fromhex(value.lower())
            if len(digest) in (32, 48, 64):
                return digest
    return None


def leaf_extra(event: EventRow) -> dict[str, ExtraValue]:
    """The event's own time and data as leaf `extra` (bounded, canonical-safe)."""
    extra: dict[str, ExtraValue] = {
        OCCURRED_AT_KEY: event.occurred_at.astimezone(UTC)
        .replace(tzinfo=None)
        .isoformat(timespec="microseconds")
        + "Z"
    }
    document = _document_hash(event) is not None
    for key in sorted(event.data)[:MAX_DATA_KEYS]:
        if document and key in DOCUMENT_KEYS:
            continue  # it is the leaf's `document` field
        name = _extra_key(str(key))
        if name in extra or not _KEY_OK.fullmatch(name):
            continue
        extra[name] = _extra_value(event.data[key], event.owner_id)
    return extra


def new_salt() -> bytes:
    """A fresh commitment salt for one leaf (stored with it, never published)."""
    return secrets.token_bytes(SALT_BYTES)


def build_leaf(
    event: EventRow,
    index: int,
    time: datetime,
    owner_tag: bytes,
    credential_tag: bytes | None,
    salt: bytes,
) -> OpenedLeaf:
    """The v2 leaf of `event` at `index`, stamped `time` (its sequencing
    time), committed under `salt`, with its opening."""
    opening = LeafOpening(
        salt=salt,
        owner_tag=owner_tag,
        credential_tag=credential_tag,
        document_hash=_document_hash(event),
        extra=leaf_extra(event),
    )
    return OpenedLeaf.seal(index, event.event_type, time, opening)  # type: ignore[arg-type]


def build_v1_leaf(
    event: EventRow,
    index: int,
    time: datetime,
    owner_tag: bytes,
    credential_tag: bytes | None,
) -> EventLeaf:
    """The v1 leaf (content in the clear) of `event`: what was logged before
    v2, re-derived to check those rows."""
    return EventLeaf(
        index=index,
        event_type=event.event_type,  # type: ignore[arg-type]  # validated by EventLeaf
        time=time,
        owner_tag=owner_tag,
        credential_tag=credential_tag,
        document_hash=_document_hash(event),
        extra=leaf_extra(event),
    )
