"""Tables of credentials: owner keys (only their sealed blobs) and the
one-time HSM transport keys their passwords travel under."""

from __future__ import annotations

from sqlalchemy import CheckConstraint, Column, ForeignKey, Index, LargeBinary, String, Table, text

from cloudsign.storage.schema import metadata
from cloudsign.storage.types import UTCDateTime

transport_keys = Table(
    "transport_keys",
    metadata,
    Column("id", String(36), primary_key=True),
    # NULL: issued for a login of an IIN no account has (a decoy)
    Column("owner_id", String(36), ForeignKey("owners.id"), index=True),
    Column("purpose", String(32), nullable=False),
    Column("public_key", LargeBinary, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False, index=True),
    Column("used_at", UTCDateTime()),
)

credentials = Table(
    "credentials",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("owner_id", String(36), ForeignKey("owners.id"), nullable=False, index=True),
    Column("status", String(16), nullable=False),  # active | deleted
    Column("key_algorithm", String(16), nullable=False),
    Column("public_key", LargeBinary, nullable=False),
    Column("key_blob", LargeBinary),  # NULL once destroyed
    Column("certificate_serial", String(40)),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("deleted_at", UTCDateTime()),
    CheckConstraint("status IN ('active', 'deleted')", name="status"),
)
# One cloud key per citizen at a time: a racing second request loses here.
Index(
    "uq_credentials_active_owner",
    credentials.c.owner_id,
    unique=True,
    sqlite_where=text("status = 'active'"),
    postgresql_where=text("status = 'active'"),
)
