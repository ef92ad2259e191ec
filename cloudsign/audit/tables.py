"""The audit log's tables: the sequenced leaves (with each v2 leaf's
commitment salt), the log head (the lock every sequencer and day close
takes), signed day checkpoints and on-chain anchors.

`events` (storage.schema) stays the record each change writes in its own
transaction; `log_leaves` is the log proper, one row per sequenced event.
The index on `events.owner_id` is declared here because the audit log is
what reads events by owner (an owner's own log events, retention).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
)

from cloudsign.storage.schema import events, metadata
from cloudsign.storage.types import UTCDateTime

#: The one row of `log_head`.
HEAD_ID = 1

log_head = Table(
    "log_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("tree_size", BigInteger, nullable=False),
    # Time of the last leaf: leaf times never go backwards with the index.
    Column("last_time", UTCDateTime()),
    # End (UTC) of the last day closed by a checkpoint: no later leaf is stamped before it.
    Column("closed_until", UTCDateTime()),
    Column("first_day", Date, nullable=False),
    # The anchoring contract this log writes to, once deployed or configured.
    Column("contract_address", String(42)),
    Column("chain_id", BigInteger),
    CheckConstraint("id = 1", name="single_row"),
)

log_leaves = Table(
    "log_leaves",
    metadata,
    Column("leaf_index", BigInteger, primary_key=True, autoincrement=False),
    Column("event_seq", BigInteger, nullable=False, unique=True),
    # Canonical leaf bytes (v2: the public leaf); NULL once retention dropped
    # the content.
    Column("leaf", LargeBinary),
    Column("leaf_hash", LargeBinary(32), nullable=False, index=True),
    # The leaf's time, stamped when it was sequenced.
    Column("sequenced_at", UTCDateTime(), nullable=False, index=True),
    # The v2 commitment salt: with the event row it re-derives the leaf's
    # opening, so it never leaves the database except inside an opening (the
    # owner's, an auditor's). NULL for a v1 leaf (logged before commitments)
    # and once retention dropped the content: the commitment can then never
    # be opened again.
    Column("salt", LargeBinary(32)),
)

#: An owner's events (their own log view, retention) are found through this.
Index("ix_events_owner_id", events.c.owner_id)

log_checkpoints = Table(
    "log_checkpoints",
    metadata,
    Column("day", Date, primary_key=True),
    Column("tree_size", BigInteger, nullable=False),
    Column("root", LargeBinary(32), nullable=False),
    Column("note", Text, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

log_anchors = Table(
    "log_anchors",
    metadata,
    Column("day", Date, ForeignKey("log_checkpoints.day"), primary_key=True),
    Column("contract", String(42), nullable=False),
    Column("status", String(16), nullable=False),
    Column("tx_hash", String(66)),
    Column("block_number", BigInteger),
    Column("confirmations", Integer, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_error", String(400)),
    Column("updated_at", UTCDateTime(), nullable=False),
    CheckConstraint("status IN ('pending', 'submitted', 'confirmed', 'conflict')", name="status"),
)
