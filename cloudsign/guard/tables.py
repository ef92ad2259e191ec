"""The guard's counters: one row per (limit, subject)."""

from __future__ import annotations

from sqlalchemy import Column, Integer, PrimaryKeyConstraint, String, Table

from cloudsign.storage.schema import metadata
from cloudsign.storage.types import UTCDateTime

guard_counters = Table(
    "guard_counters",
    metadata,
    Column("limit_name", String(32), nullable=False),
    # An owner, credential or operator id, an IIN, or a client address; hashed
    # when it is personal (see service.subject_key).
    Column("subject", String(64), nullable=False),
    Column("count", Integer, nullable=False),
    Column("window_start", UTCDateTime(), nullable=False),
    Column("locked_until", UTCDateTime()),
    PrimaryKeyConstraint("limit_name", "subject", name="pk_guard_counters"),
)
