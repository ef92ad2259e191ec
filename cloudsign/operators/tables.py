"""Tables of operators: the people who run the centre, their sessions, and
the actions waiting for a second operator's approval."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    LargeBinary,
    String,
    Table,
    text,
)

from cloudsign.storage.schema import metadata
from cloudsign.storage.types import UTCDateTime

operators = Table(
    "operators",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("display_name", String(200), nullable=False),
    Column("roles", JSON, nullable=False),  # list of Role values
    Column("status", String(16), nullable=False),  # setup | active | disabled
    # Argon2id PHC string (argon2-cffi); NULL until the operator sets it.
    Column("password_hash", String(200)),
    Column("totp_sealed", LargeBinary),
    Column("totp_confirmed_at", UTCDateTime()),
    Column("totp_last_step", BigInteger),
    # SHA-256 of the one-time code with which a new operator sets a password.
    Column("setup_code_hash", String(64)),
    Column("setup_expires_at", UTCDateTime()),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("created_by", String(36)),
    CheckConstraint("status IN ('setup', 'active', 'disabled')", name="status"),
)

operator_sessions = Table(
    "operator_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("operator_id", String(36), ForeignKey("operators.id"), nullable=False, index=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("revoked", Boolean, nullable=False, server_default=text("false")),
)

approvals = Table(
    "approvals",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("action", String(64), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("requested_by", String(36), ForeignKey("operators.id"), nullable=False),
    Column("requested_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("status", String(16), nullable=False),  # pending | done | rejected | failed
    Column("decided_by", String(36), ForeignKey("operators.id")),
    Column("decided_at", UTCDateTime()),
    Column("result", JSON),
    CheckConstraint("status IN ('pending', 'done', 'rejected', 'failed')", name="status"),
)
