"""The service's audit log: sequencing events into leaves, closing days into
signed checkpoints, proofs, day exports, the owner's own events and retention.

Who sees what. Leaves are v2: the public leaf (index, type, time,
commitment) is all that `/log/*` serves — public exports and bundles, with
a v1 leaf (logged before commitments, owner tag in the clear) shown as its
hash only. An owner gets their own events with openings
(`owner_events`); an auditor gets full exports (`write_export(full=True)`):
v2 leaves with openings, v1 leaves in the clear. Openings are re-derived
from the event row and the stored salt each time, never stored.

Ordering. `append_event` writes an `events` row in the same transaction as
the change it records; `seq` values may have gaps and commit out of order.
The sequencer assigns contiguous leaf indices to committed, unsequenced events
in `seq` order, under the `log_head` row lock (PostgreSQL `SELECT … FOR
UPDATE`; SQLite's write lock, taken by updating the row), so any number of
processes may run it. A leaf's time is stamped at sequencing and never goes
backwards (nor before the end of the last closed day); the event's own time
is kept in the leaf's `extra`.

Days. A day closes when the clock passes its end (`DayClock`, fixed offset):
under the same lock, the checkpoint covers every leaf stamped before the end,
is signed by the HSM's Ed25519 log key and stored once (primary key on the
day). Days without events get a checkpoint of the same size.

Each process keeps a `MerkleTree` of all leaf hashes, rebuilt from the table
at start and extended with what it sequences or finds others have sequenced.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, Any, Final

from sqlalchemy import and_, exists, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from audit_chain import (
    CONTENTS_FULL,
    CONTENTS_PUBLIC,
    Checkpoint,
    CommittedLeaf,
    DayClock,
    DayExportHeader,
    DroppedLeaf,
    EventLeaf,
    InclusionBundle,
    Leaf,
    LeafOpening,
    MerkleTree,
    NoteVerifier,
    OpenedLeaf,
    WithheldLeaf,
    build_inclusion_bundle,
    iter_day_export,
    leaf_hash,
    parse_leaf,
    sign_checkpoint_async,
)
from audit_chain.days import parse_offset
from audit_chain.errors import AuditChainError
from audit_chain.export import ExportItem
from audit_chain.leaf import loads_strict, opening_from_json_obj
from cloudsign.audit.leaves import EventRow, TagMaker, build_leaf, build_v1_leaf, new_salt
from cloudsign.audit.signers import HsmNoteSigner
from cloudsign.audit.tables import HEAD_ID, log_checkpoints, log_head, log_leaves
from cloudsign.ca import certificates
from cloudsign.clock import Clock, utc_now
from cloudsign.errors import CloudsignError, NotFoundError, ValidationError
from cloudsign.settings import AuditSettings
from cloudsign.storage import Database
from cloudsign.storage.schema import events
from hsm_bridge import KeyedHasher, ServiceKeys

log = logging.getLogger(__name__)

#: Unsequenced events are looked for above (highest sequenced seq − this)...
SCAN_WINDOW: Final = 10_000
#: ...and in the whole table this often, for transactions that stayed open long.
FULL_SCAN_SECONDS: Final = 60.0
#: Days closed per transaction when catching up after a long stop.
MAX_DAYS_PER_CLOSE: Final = 366
EXPORT_CHUNK: Final = 5_000
RETENTION: Final = timedelta(days=365)
#: Most events one page of an owner's log view holds.
MAX_OWNER_PAGE: Final = 500


class AuditLogError(CloudsignError):
    code = "audit_log_error"
    title = "Audit log error"


class TamperedLogError(AuditLogError):
    """The stored log does not rebuild its signed checkpoint; the service
    refuses to publish it (an auditor given the raw export names the day)."""

    code = "audit_log_tampered"
    title = "Audit log integrity failure"


class NotYetCheckpointedError(AuditLogError):
    code = "not_yet_checkpointed"
    status = 404
    title = "Not yet in a checkpoint"


@dataclass(frozen=True)
class CheckpointRecord:
    day: date
    tree_size: int
    root: bytes
    note: str
    created_at: datetime

    def to_json_obj(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "tree_size": self.tree_size,
            "root": self.root.hex(),
            "checkpoint": self.note,
        }


@dataclass(frozen=True, repr=False)
class OwnerEvent:
    """One of an owner's own events: the leaf, its opening (v2) and, once its
    day has closed, the inclusion bundle with both (`audit-chain prove` input).
    `leaf` is None (and so the opening) once retention dropped the content.
    The repr shows no content: an opening links a leaf to its owner."""

    index: int
    leaf_hash: bytes
    leaf: Leaf | None
    opening: LeafOpening | None
    bundle: InclusionBundle | None

    def __repr__(self) -> str:
        return f"OwnerEvent(index={self.index}, proven={self.bundle is not None})"

    def to_json_obj(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "leaf_hash": self.leaf_hash.hex(),
            "leaf": None if self.leaf is None else self.leaf.to_json_obj(),
            "opening": None if self.opening is None else self.opening.to_json_obj(),
            "bundle": None if self.bundle is None else self.bundle.to_json_obj(),
        }


@dataclass(frozen=True, repr=False)
class _LeafRow:
    index: int
    event_seq: int
    leaf: bytes | None
    hash: bytes
    time: datetime
    salt: bytes | None

    def __repr__(self) -> str:  # the salt opens the leaf
        return f"_LeafRow(index={self.index})"

    @classmethod
    def from_mapping(cls, r: Any) -> _LeafRow:
        return cls(
            index=int(r["leaf_index"]),
            event_seq=int(r["event_seq"]),
            leaf=None if r["leaf"] is None else bytes(r["leaf"]),
            hash=bytes(r["leaf_hash"]),
            time=r["sequenced_at"],
            salt=None if r["salt"] is None else bytes(r["salt"]),
        )


def _checkpoint(row: Any) -> CheckpointRecord:
    return CheckpointRecord(
        day=row["day"],
        tree_size=int(row["tree_size"]),
        root=bytes(row["root"]),
        note=str(row["note"]),
        created_at=row["created_at"],
    )


class AuditLog:
    """One process's handle on the log. All methods are safe to call from
    several processes at once; the database lock orders them."""

    def __init__(
        self,
        db: Database,
        keys: ServiceKeys,
        hasher: KeyedHasher,
        settings: AuditSettings,
        *,
        now: Clock = utc_now,
    ) -> None:
        self.db = db
        self.origin = settings.origin
        self.clock = DayClock(parse_offset(settings.utc_offset))
        self.batch_size = settings.sequence_batch
        self._now = now
        self._keys = keys
        self._tags = TagMaker(hasher)
        self._tree = MerkleTree()
        self._lock = asyncio.Lock()
        self._signer: HsmNoteSigner | None = None
        self._max_seq = 0
        self._next_full_scan = 0.0

    def __repr__(self) -> str:
        return f"AuditLog(origin={self.origin!r}, size={self._tree.size})"

    # -- start-up ------------------------------------------------------------

    async def start(self) -> None:
        """Log key in the HSM, the head row, and the tree from stored hashes."""
        self._signer = await HsmNoteSigner.create(self._keys, self.origin)
        await self._ensure_head()
        async with self._lock, self.db.read() as conn:
            rows = await conn.execute(
                select(log_leaves.c.leaf_hash).order_by(log_leaves.c.leaf_index)
            )
            self._tree = MerkleTree.from_leaf_hashes(bytes(h) for (h,) in rows)
        log.info("audit log %s: %d leaves loaded", self.origin, self._tree.size)

    async def _ensure_head(self) -> None:
        async with self.db.read() as conn:
            if (await conn.execute(select(log_head.c.id))).first() is not None:
                return
        with contextlib.suppress(IntegrityError):  # another process created it
            async with self.db.transaction() as conn:
                await conn.execute(
                    log_head.insert().values(
                        id=HEAD_ID, tree_size=0, first_day=self.clock.day_of(self._now())
                    )
                )

    @property
    def signer(self) -> HsmNoteSigner:
        if self._signer is None:
            raise AuditLogError("the audit log is not started")
        return self._signer

    @property
    def verifier(self) -> NoteVerifier:
        return self.signer.verifier

    @property
    def tree(self) -> MerkleTree:
        return self._tree

    # -- locking and tree sync -----------------------------------------------

    async def _lock_head(self, conn: AsyncConnection) -> Any:
        """Take the log lock for the rest of `conn`'s transaction; the head row."""
        if self.db.is_sqlite:
            # A write up front takes SQLite's one write lock before any read.
            await conn.execute(
                update(log_head).where(log_head.c.id == HEAD_ID).values(id=log_head.c.id)
            )
            stmt = select(log_head).where(log_head.c.id == HEAD_ID)
        else:
            stmt = select(log_head).where(log_head.c.id == HEAD_ID).with_for_update()
        head = (await conn.execute(stmt)).mappings().one_or_none()
        if head is None:
            raise AuditLogError("the log head row is missing (start() not run?)")
        return head

    async def _sync_tree(self, conn: AsyncConnection, size: int | None = None) -> None:
        """Append the committed leaves this process has not seen yet."""
        stmt = (
            select(log_leaves.c.leaf_index, log_leaves.c.leaf_hash)
            .where(log_leaves.c.leaf_index >= self._tree.size)
            .order_by(log_leaves.c.leaf_index)
        )
        if size is not None:
            if size <= self._tree.size:
                return
            stmt = stmt.where(log_leaves.c.leaf_index < size)
        expected = self._tree.size
        for index, h in await conn.execute(stmt):
            if index != expected:
                raise TamperedLogError(f"leaf {expected} is missing from the log")
            self._tree.append(bytes(h))
            expected += 1

    async def refresh(self) -> int:
        """Catch up with leaves other processes sequenced; the tree size."""
        async with self._lock, self.db.read() as conn:
            await self._sync_tree(conn)
        return self._tree.size

    # -- sequencing ----------------------------------------------------------

    async def sequence_pending(self) -> int:
        """Sequence every committed, unsequenced event; how many were."""
        total = 0
        while True:
            n = await self._sequence_batch()
            total += n
            if n < self.batch_size:
                return total

    async def _sequence_batch(self) -> int:
        full_scan = time.monotonic() >= self._next_full_scan
        floor = 0 if full_scan else max(0, self._max_seq - SCAN_WINDOW)
        async with self._lock:
            async with self.db.transaction() as conn:
                head = await self._lock_head(conn)
                size = int(head["tree_size"])
                await self._sync_tree(conn, size)
                if self._tree.size != size:
                    raise TamperedLogError(
                        f"the log head says {size} leaves, the table holds {self._tree.size}"
                    )
                rows = (
                    (
                        await conn.execute(
                            select(events)
                            .where(
                                events.c.seq > floor,
                                ~exists().where(log_leaves.c.event_seq == events.c.seq),
                            )
                            .order_by(events.c.seq)
                            .limit(self.batch_size)
                        )
                    )
                    .mappings()
                    .all()
                )
                if full_scan:
                    # Lowest unsequenced seqs come first; later windows start below them.
                    self._next_full_scan = time.monotonic() + FULL_SCAN_SECONDS
                if not rows:
                    return 0
                stamp = max(t for t in (self._now(), head["last_time"], head["closed_until"]) if t)
                values: list[dict[str, Any]] = []
                hashes: list[bytes] = []
                for i, row in enumerate(rows):
                    event = EventRow.from_mapping(row)
                    owner, credential = await self._tags.tags_for(event)
                    salt = new_salt()
                    leaf = build_leaf(event, size + i, stamp, owner, credential, salt).leaf
                    data = leaf.to_bytes()
                    h = leaf_hash(data)
                    hashes.append(h)
                    values.append(
                        {
                            "leaf_index": size + i,
                            "event_seq": event.seq,
                            "leaf": data,
                            "leaf_hash": h,
                            "sequenced_at": stamp,
                            "salt": salt,
                        }
                    )
                await conn.execute(log_leaves.insert(), values)
                await conn.execute(
                    update(log_head)
                    .where(log_head.c.id == HEAD_ID)
                    .values(tree_size=size + len(values), last_time=stamp)
                )
            # Only after the commit: a rolled-back batch must not stay in the tree.
            self._tree.extend(hashes)
            self._max_seq = max(self._max_seq, int(rows[-1]["seq"]))
            return len(values)

    # -- days and checkpoints ------------------------------------------------

    async def sequencer_lag(self) -> tuple[int, datetime | None]:
        """Committed events not yet sequenced (in the recent scan window) and
        when the oldest of them occurred: what `/metrics` reports."""
        floor = max(0, self._max_seq - SCAN_WINDOW)
        stmt = select(func.count(), func.min(events.c.occurred_at)).where(
            events.c.seq > floor,
            ~exists().where(log_leaves.c.event_seq == events.c.seq),
        )
        async with self.db.read() as conn:
            count, oldest = (await conn.execute(stmt)).one()
        return int(count), oldest

    async def close_due_days(self) -> list[CheckpointRecord]:
        """Checkpoint every day that has ended and has no checkpoint yet."""
        now = self._now()
        today = self.clock.day_of(now)
        closed: list[CheckpointRecord] = []
        async with self._lock, self.db.transaction() as conn:
            head = await self._lock_head(conn)
            last = (await conn.execute(select(func.max(log_checkpoints.c.day)))).scalar()
            day: date = last + timedelta(days=1) if last is not None else head["first_day"]
            if day >= today:
                return []
            await self._sync_tree(conn, int(head["tree_size"]))
            while day < today and len(closed) < MAX_DAYS_PER_CLOSE:
                _, end = self.clock.bounds(day)
                first_after = (
                    await conn.execute(
                        select(func.min(log_leaves.c.leaf_index)).where(
                            log_leaves.c.sequenced_at >= end
                        )
                    )
                ).scalar()
                size = int(head["tree_size"]) if first_after is None else int(first_after)
                root = self._tree.root(size)
                note = await sign_checkpoint_async(Checkpoint(self.origin, size, root), self.signer)
                record = CheckpointRecord(day, size, root, note, now)
                await conn.execute(
                    log_checkpoints.insert().values(
                        day=day, tree_size=size, root=root, note=note, created_at=now
                    )
                )
                closed.append(record)
                day += timedelta(days=1)
            await conn.execute(
                update(log_head)
                .where(log_head.c.id == HEAD_ID)
                .values(closed_until=self.clock.bounds(closed[-1].day)[1])
            )
        for record in closed:
            log.info("audit day %s closed: tree size %d", record.day.isoformat(), record.tree_size)
        return closed

    async def checkpoint(self, day: date) -> CheckpointRecord | None:
        async with self.db.read() as conn:
            row = (
                (await conn.execute(select(log_checkpoints).where(log_checkpoints.c.day == day)))
                .mappings()
                .one_or_none()
            )
        return None if row is None else _checkpoint(row)

    async def latest_checkpoint(self) -> CheckpointRecord | None:
        async with self.db.read() as conn:
            row = (
                (
                    await conn.execute(
                        select(log_checkpoints).order_by(log_checkpoints.c.day.desc()).limit(1)
                    )
                )
                .mappings()
                .one_or_none()
            )
        return None if row is None else _checkpoint(row)

    async def checkpoints(self, since: date | None = None) -> list[CheckpointRecord]:
        stmt = select(log_checkpoints).order_by(log_checkpoints.c.day)
        if since is not None:
            stmt = stmt.where(log_checkpoints.c.day >= since)
        async with self.db.read() as conn:
            return [_checkpoint(r) for r in (await conn.execute(stmt)).mappings().all()]

    # -- proofs --------------------------------------------------------------

    async def leaf_index_of(self, leaf_hash_value: bytes) -> int:
        async with self.db.read() as conn:
            index = (
                await conn.execute(
                    select(func.min(log_leaves.c.leaf_index)).where(
                        log_leaves.c.leaf_hash == leaf_hash_value
                    )
                )
            ).scalar()
        if index is None:
            raise NotFoundError("no leaf with this hash")
        return int(index)

    async def inclusion_bundle(self, index: int) -> InclusionBundle:
        """Public proof of leaf `index` up to the checkpoint of the day it was
        logged: the public leaf, no opening (a v1 leaf: its hash only)."""
        async with self.db.read() as conn:
            row = (
                (await conn.execute(select(log_leaves).where(log_leaves.c.leaf_index == index)))
                .mappings()
                .one_or_none()
            )
            if row is None:
                raise NotFoundError(f"no leaf {index}")
            cp_row = (
                (
                    await conn.execute(
                        select(log_checkpoints)
                        .where(log_checkpoints.c.tree_size > index)
                        .order_by(log_checkpoints.c.day)
                        .limit(1)
                    )
                )
                .mappings()
                .one_or_none()
            )
        if cp_row is None:
            raise NotYetCheckpointedError(
                f"leaf {index} is not in a checkpoint yet; its day has not closed"
            )
        cp = _checkpoint(cp_row)
        if self._tree.size < cp.tree_size:
            await self.refresh()
        leaf: Leaf | None = None
        if row["leaf"] is not None:
            try:
                leaf = parse_leaf(bytes(row["leaf"]))
            except AuditChainError as e:
                raise TamperedLogError(f"stored leaf {index} is not a canonical leaf") from e
            if isinstance(leaf, EventLeaf):
                leaf = None  # v1: the owner tag is in the clear; not public
        try:
            return build_inclusion_bundle(self._tree, index, cp.tree_size, cp.day, cp.note, leaf)
        except AuditChainError as e:
            raise TamperedLogError(f"cannot prove leaf {index}: {e.message}") from e

    async def consistency_proof(self, first: int, second: int) -> list[bytes]:
        latest = await self.latest_checkpoint()
        limit = 0 if latest is None else latest.tree_size
        if not 0 <= first <= second <= limit:
            raise ValidationError(
                f"need 0 <= first <= second <= {limit} (the latest checkpoint's size)"
            )
        if self._tree.size < second:
            await self.refresh()
        return self._tree.consistency_proof(first, second)

    # -- day export ----------------------------------------------------------

    async def export_header(self, day: date, *, full: bool = False) -> DayExportHeader:
        cp = await self.checkpoint(day)
        if cp is None:
            raise NotFoundError(f"day {day.isoformat()} has no checkpoint")
        previous = await self.checkpoint(day - timedelta(days=1))
        previous_size = 0 if previous is None else previous.tree_size
        if self._tree.size < cp.tree_size:
            await self.refresh()
        return DayExportHeader(
            day=day,
            origin=self.origin,
            previous_checkpoint=None if previous is None else previous.note,
            frontier=self._tree.frontier(previous_size).hashes,
            checkpoint=cp.note,
            utc_offset=self.clock.utc_offset,
            contents=CONTENTS_FULL if full else CONTENTS_PUBLIC,
        )

    async def _entry_rows(self, start: int, end: int) -> list[tuple[_LeafRow, EventRow | None]]:
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(log_leaves, events)
                    .select_from(
                        log_leaves.outerjoin(events, events.c.seq == log_leaves.c.event_seq)
                    )
                    .where(and_(log_leaves.c.leaf_index >= start, log_leaves.c.leaf_index < end))
                    .order_by(log_leaves.c.leaf_index)
                )
            ).mappings()
            out: list[tuple[_LeafRow, EventRow | None]] = []
            for r in rows:
                event = None if r["seq"] is None else EventRow.from_mapping(r)
                out.append((_LeafRow.from_mapping(r), event))
        return out

    async def _derive(self, row: _LeafRow, event: EventRow) -> tuple[bytes, LeafOpening | None]:
        """The leaf bytes (and, v2, the opening bytes) that `event` and the
        stored salt give for `row`; empty bytes if the event no longer makes
        a leaf. A row without a salt is a v1 leaf."""
        owner, credential = await self._tags.tags_for(event)
        try:
            if row.salt is None:
                return build_v1_leaf(event, row.index, row.time, owner, credential).to_bytes(), None
            opened = build_leaf(event, row.index, row.time, owner, credential, row.salt)
        except AuditChainError:
            return b"", None
        return opened.leaf.to_bytes(), opened.opening

    async def _export_lines(self, start: int, end: int, full: bool) -> list[tuple[str, bytes]]:
        """(kind, line) for leaves [start, end): kind is dropped, withheld,
        leaf or opened, so the checked writer parses each line as what it
        must be."""
        lines: list[tuple[str, bytes]] = []
        for row, event in await self._entry_rows(start, end):
            if row.leaf is None:
                lines.append(("dropped", _hash_line("dropped", row.index, row.hash)))
                continue
            if event is None:
                continue
            derived, opening = await self._derive(row, event)
            # Never repair: the stored leaf goes out unless its event (and
            # salt) disagree with it, in which case whichever of the two is
            # *not* the logged content goes out, so any edit of either table
            # fails the auditor's root check.
            if derived == row.leaf or leaf_hash(derived) == row.hash:
                content = row.leaf
            else:
                content = derived or row.leaf
            if row.salt is None:
                # v1: the content carries the owner tag in the clear; the
                # public sees its hash (of what goes out, so edits still show).
                if full:
                    lines.append(("leaf", content + b"\n"))
                else:
                    lines.append(
                        ("withheld", _hash_line("withheld", row.index, leaf_hash(content)))
                    )
            elif full and opening is not None:
                opened = b'{"leaf":' + content + b',"opening":' + opening.to_bytes() + b"}\n"
                lines.append(("opened", opened))
            else:
                # Public v2 leaf; in a full export, one whose opening cannot be
                # derived any more goes out bare, which the auditor flags.
                lines.append(("leaf", content + b"\n"))
        return lines

    async def export_chunk(self, start: int, end: int, *, full: bool = False) -> list[bytes]:
        """The export lines of leaves [start, end), as the database has them.

        Public (default): v2 leaves as stored, v1 leaves as their hash. Full
        (`full=True`, auditors): v2 leaves with their openings, v1 leaves in
        the clear. A leaf whose event was deleted is left out (the auditor
        sees the gap).
        """
        return [line for _, line in await self._export_lines(start, end, full)]

    async def iter_export_lines(self, day: date, *, full: bool = False) -> AsyncIterator[bytes]:
        """The day export as the database has it (no self-check): what an
        auditor would receive from a compromised service."""
        header = await self.export_header(day, full=full)
        yield header.to_line()
        start = header.previous_size
        end = start + header.leaf_count
        for lo in range(start, end, EXPORT_CHUNK):
            for line in await self.export_chunk(lo, min(end, lo + EXPORT_CHUNK), full=full):
                yield line

    async def write_export(self, day: date, out: Path, *, full: bool = False) -> Path:
        """Write the day export to `out` through audit_chain's checked writer.

        Refuses (TamperedLogError, naming the day) to publish a file whose
        entries do not rebuild the signed checkpoint, or (full) whose
        openings do not open their leaves. A public export never holds an
        opening or a v1 leaf's content (the writer refuses an opening there).
        The writer runs on a thread; chunks are fetched on the event loop.
        """
        header = await self.export_header(day, full=full)
        loop = asyncio.get_running_loop()
        start = header.previous_size
        end = start + header.leaf_count

        def entries() -> Iterator[ExportItem]:
            for lo in range(start, end, EXPORT_CHUNK):
                future = asyncio.run_coroutine_threadsafe(
                    self._export_lines(lo, min(end, lo + EXPORT_CHUNK), full), loop
                )
                for kind, line in future.result():
                    yield _parse_line(kind, line)

        def write() -> None:
            fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    _write_lines(f, iter_day_export(header, entries()))
                os.replace(tmp, out)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise

        try:
            await loop.run_in_executor(None, write)
        except (AuditChainError, ValueError, KeyError, TypeError) as e:
            message = e.message if isinstance(e, AuditChainError) else type(e).__name__
            raise TamperedLogError(
                f"day {day.isoformat()}: the stored log does not rebuild its checkpoint "
                f"({message}); export refused"
            ) from e
        return out

    # -- the owner's own events ------------------------------------------------

    async def owner_events(
        self, owner_id: str, *, start: int = 0, limit: int = 100
    ) -> list[OwnerEvent]:
        """The owner's events from leaf index `start` on, at most `limit`, in
        log order: leaf, opening (re-derived from the event and the stored
        salt) and, once the day has closed, the inclusion bundle with both.

        Fails closed (TamperedLogError) if a stored leaf does not match its
        event: an owner is never handed an opening of another leaf."""
        limit = max(1, min(limit, MAX_OWNER_PAGE))
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(log_leaves, events)
                    .select_from(log_leaves.join(events, events.c.seq == log_leaves.c.event_seq))
                    .where(events.c.owner_id == owner_id, log_leaves.c.leaf_index >= start)
                    .order_by(log_leaves.c.leaf_index)
                    .limit(limit)
                )
            ).mappings()
            found = [(_LeafRow.from_mapping(r), EventRow.from_mapping(r)) for r in rows]
            checkpoints: list[CheckpointRecord] = []
            if found:
                checkpoints = [
                    _checkpoint(r)
                    for r in (
                        await conn.execute(
                            select(log_checkpoints)
                            .where(log_checkpoints.c.tree_size > found[0][0].index)
                            .order_by(log_checkpoints.c.day)
                        )
                    ).mappings()
                ]
        sizes = [cp.tree_size for cp in checkpoints]
        if checkpoints and self._tree.size < sizes[-1]:
            await self.refresh()
        out: list[OwnerEvent] = []
        for row, event in found:
            leaf, opening = await self._owner_content(row, event)
            # The first checkpoint whose tree holds the leaf: that of its day.
            at = bisect.bisect_right(sizes, row.index)
            bundle = None
            if at < len(checkpoints):
                cp = checkpoints[at]
                try:
                    bundle = build_inclusion_bundle(
                        self._tree, row.index, cp.tree_size, cp.day, cp.note, leaf, opening=opening
                    )
                except AuditChainError as e:
                    raise TamperedLogError(f"cannot prove leaf {row.index}: {e.message}") from e
            out.append(OwnerEvent(row.index, row.hash, leaf, opening, bundle))
        return out

    async def _owner_content(
        self, row: _LeafRow, event: EventRow
    ) -> tuple[Leaf | None, LeafOpening | None]:
        if row.leaf is None:
            return None, None  # retention dropped it: nothing left to open
        derived, opening = await self._derive(row, event)
        if derived != row.leaf or leaf_hash(derived) != row.hash:
            raise TamperedLogError(f"leaf {row.index} does not match its event")
        try:
            return parse_leaf(derived), opening
        except AuditChainError as e:  # pragma: no cover - derived bytes are canonical
            raise TamperedLogError(f"leaf {row.index} does not parse") from e

    # -- retention -----------------------------------------------------------

    async def apply_retention(self) -> int:
        """Drop leaf contents (keep hashes) of owners whose last certificate
        expired more than a year ago, for their events up to a year after it.
        The salt goes with the content, so those commitments can never be
        opened again."""
        now = self._now()
        async with self.db.read() as conn:
            owners = (
                await conn.execute(
                    select(certificates.c.owner_id, func.max(certificates.c.not_after))
                    .where(certificates.c.owner_id.is_not(None))
                    .group_by(certificates.c.owner_id)
                    .having(func.max(certificates.c.not_after) < now - RETENTION)
                )
            ).all()
        dropped = 0
        for owner_id, last_expiry in owners:
            horizon = _aware(last_expiry) + RETENTION
            async with self.db.transaction() as conn:
                seqs = select(events.c.seq).where(
                    events.c.owner_id == owner_id, events.c.occurred_at < horizon
                )
                result = await conn.execute(
                    update(log_leaves)
                    .where(log_leaves.c.leaf.is_not(None), log_leaves.c.event_seq.in_(seqs))
                    .values(leaf=None, salt=None)
                )
                dropped += max(0, result.rowcount or 0)
        if dropped:
            log.info("retention dropped the content of %d leaves", dropped)
        return dropped


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _hash_line(key: str, index: int, h: bytes) -> bytes:
    # Canonical (sorted keys): {"dropped":…,"index":…} and {"index":…,"withheld":…}.
    if key == "dropped":
        return b'{"dropped":"' + h.hex().encode() + b'","index":' + str(index).encode() + b"}\n"
    return b'{"index":' + str(index).encode() + b',"withheld":"' + h.hex().encode() + b'"}\n'


def _parse_line(kind: str, line: bytes) -> ExportItem:
    """An export line back as the item the checked writer takes; the kind
    says what it must be, so stored bytes cannot pass for another kind."""
    body = line[:-1]
    if kind in ("dropped", "withheld"):
        obj = json.loads(body)
        if kind == "dropped":
            return DroppedLeaf(int(obj["index"]), bytes.fromhex(obj["dropped"]))
        return WithheldLeaf(int(obj["index"]), bytes.fromhex(obj["withheld"]))
    if kind == "opened":
        # Stored bytes inside: parse strictly, and the leaf part must re-encode
        # to itself, as any leaf line must.
        leaf_part, sep, rest = body.removeprefix(b'{"leaf":').partition(b',"opening":')
        if not sep or not rest.endswith(b"}"):
            raise AuditChainError("malformed opened line")
        leaf = parse_leaf(leaf_part)
        if not isinstance(leaf, CommittedLeaf):
            raise AuditChainError("an opened line holds a v2 leaf")
        return OpenedLeaf(leaf, opening_from_json_obj(loads_strict(rest[:-1])))
    return parse_leaf(body)


def _write_lines(f: IO[bytes], lines: Iterator[bytes]) -> None:
    for line in lines:
        f.write(line)
