"""Tables of accounts: owners, their access tokens and their consents."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    UniqueConstraint,
    text,
)

from cloudsign.storage.schema import metadata
from cloudsign.storage.types import UTCDateTime

owners = Table(
    "owners",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("kind", String(16), nullable=False),  # person | organisation
    Column("iin", String(12), nullable=False),
    Column("bin", String(12), nullable=False, server_default=""),
    Column("surname", String(200), nullable=False),
    Column("given_name", String(200), nullable=False),
    Column("full_name", String(400), nullable=False),
    Column("email", String(320), nullable=False),
    Column("organisation", String(400), nullable=False, server_default=""),
    Column("status", String(16), nullable=False, server_default="active"),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("deleted_at", UTCDateTime()),
    # pending: proofed, enrolment not finished; it lapses at this time.
    Column("pending_until", UTCDateTime()),
    # The proofing that established (or last re-established) this identity.
    Column("proofing_id", String(36)),
    # Argon2id parameters the device uses to derive K_pw (public, per owner).
    Column("argon2_salt", LargeBinary(32), nullable=False),
    Column("argon2_time_cost", Integer, nullable=False),
    Column("argon2_memory_kib", Integer, nullable=False),
    Column("argon2_parallelism", Integer, nullable=False),
    # TOTP seed sealed by the HSM; last accepted time step against replays.
    Column("totp_sealed", LargeBinary),
    Column("totp_confirmed_at", UTCDateTime()),
    Column("totp_last_step", BigInteger),
    CheckConstraint("kind IN ('person', 'organisation')", name="kind"),
    CheckConstraint("status IN ('pending', 'active', 'deleted', 'lapsed')", name="status"),
)
Index(
    "uq_owners_identity",
    owners.c.kind,
    owners.c.iin,
    owners.c.bin,
    unique=True,
    sqlite_where=text("status = 'active'"),
    postgresql_where=text("status = 'active'"),
)

access_tokens = Table(
    "access_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),  # hex SHA-256 of the bearer token
    Column("owner_id", String(36), ForeignKey("owners.id"), nullable=False, index=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("revoked", Boolean, nullable=False, server_default=text("false")),
    # full: a login (two factors); enrolment: a redeemed proofing, for the
    # steps of enrolment only.
    Column("scope", String(16), nullable=False, server_default="full"),
    Column("proofing_id", String(36)),
)

consents = Table(
    "consents",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("owner_id", String(36), ForeignKey("owners.id"), nullable=False),
    Column("kind", String(32), nullable=False),  # personal_data | cloud_key_storage
    Column("text_version", String(32), nullable=False),
    Column("text_sha256", String(64), nullable=False),
    Column("language", String(8), nullable=False, server_default="en"),
    Column("accepted_at", UTCDateTime(), nullable=False),
    UniqueConstraint("owner_id", "kind", "text_version", name="uq_consents_owner_kind_version"),
)
