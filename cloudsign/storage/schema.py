"""The one schema of cloudsign, as SQLAlchemy Core tables.

Migrations in `migrations/versions` create exactly these; a test compares the
migrated database with this metadata so the two cannot drift.

What is never stored in the clear: owner key material (only the HSM-sealed
blob), passwords and K_pw (never reach the server), TOTP seeds and face
templates (HSM-sealed), access tokens (SHA-256 only).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    text,
)

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
    # Argon2id parameters the device uses to derive K_pw (public, per owner).
    Column("argon2_salt", LargeBinary(32), nullable=False),
    Column("argon2_time_cost", Integer, nullable=False),
    Column("argon2_memory_kib", Integer, nullable=False),
    Column("argon2_parallelism", Integer, nullable=False),
    # TOTP seed sealed by the HSM; last accepted time step against replays.
    Column("totp_sealed", LargeBinary),
    Column("totp_confirmed_at", UTCDateTime()),
    Column("totp_last_step", BigInteger),
    # Face template sealed by the HSM (biometrics).
    Column("face_template_sealed", LargeBinary),
    Column("face_enrolled_at", UTCDateTime()),
    CheckConstraint("kind IN ('person', 'organisation')", name="kind"),
    CheckConstraint("status IN ('active', 'deleted')", name="status"),
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
)

consents = Table(
    "consents",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("owner_id", String(36), ForeignKey("owners.id"), nullable=False),
    Column("kind", String(32), nullable=False),  # personal_data | cloud_key_storage
    Column("text_version", String(32), nullable=False),
    Column("text_sha256", String(64), nullable=False),
    Column("accepted_at", UTCDateTime(), nullable=False),
    UniqueConstraint("owner_id", "kind", "text_version", name="uq_consents_owner_kind_version"),
)

transport_keys = Table(
    "transport_keys",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("owner_id", String(36), ForeignKey("owners.id"), nullable=False, index=True),
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
    Column("failed_attempts", Integer, nullable=False, server_default="0"),
    Column("locked_until", UTCDateTime()),
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

certificates = Table(
    "certificates",
    metadata,
    Column("serial", String(40), primary_key=True),  # lower-case hex
    Column("owner_id", String(36), ForeignKey("owners.id"), index=True),
    Column("credential_id", String(36), ForeignKey("credentials.id")),
    Column("subject", String(1000), nullable=False),
    Column("issuer", String(1000), nullable=False),
    Column("not_before", UTCDateTime(), nullable=False),
    Column("not_after", UTCDateTime(), nullable=False),
    Column("der", LargeBinary, nullable=False),
    Column("status", String(16), nullable=False, server_default="good"),
    Column("revoked_at", UTCDateTime()),
    Column("revocation_reason", String(32)),
    Column("issued_at", UTCDateTime(), nullable=False),
    CheckConstraint("status IN ('good', 'revoked')", name="status"),
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
