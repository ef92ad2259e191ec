"""The one `metadata` every table of cloudsign is defined on, and the one
table every feature writes to: `events`, the audit trail.

Each feature keeps its own tables next to its code (`cloudsign/<feature>/
tables.py`); `storage.tables.all_tables()` gathers them. Migrations in
`migrations/versions` create exactly these; a test compares the migrated
database with this metadata so the two cannot drift.

What is never stored in the clear: owner key material (only the HSM-sealed
blob), passwords and K_pw (never reach the server), TOTP seeds and face
templates (HSM-sealed), access tokens (SHA-256 only).
"""

from __future__ import annotations

from sqlalchemy import JSON, Column, MetaData, String, Table

from cloudsign.storage.types import BigIntPK, UTCDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

events = Table(
    "events",
    metadata,
    Column("seq", BigIntPK, primary_key=True, autoincrement=True),
    Column("event_type", String(32), nullable=False),
    Column("occurred_at", UTCDateTime(), nullable=False),
    Column("owner_id", String(36)),
    Column("credential_id", String(36)),
    Column("data", JSON, nullable=False),
)
