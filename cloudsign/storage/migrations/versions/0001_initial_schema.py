"""initial schema

Revision ID: 0001
Revises: (none)
"""

import sqlalchemy as sa
from alembic import op

import cloudsign.storage.types

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("event_type", sa.String(length=32), nullable=False),
        sa.Column(
            "occurred_at", cloudsign.storage.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("owner_id", sa.String(length=36), nullable=True),
        sa.Column("credential_id", sa.String(length=36), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_events")),
    )
    op.create_table(
        "owners",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("iin", sa.String(length=12), nullable=False),
        sa.Column("bin", sa.String(length=12), server_default="", nullable=False),
        sa.Column("surname", sa.String(length=200), nullable=False),
        sa.Column("given_name", sa.String(length=200), nullable=False),
        sa.Column("full_name", sa.String(length=400), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("organisation", sa.String(length=400), server_default="", nullable=False),
        sa.Column("status", sa.String(length=16), server_default="active", nullable=False),
        sa.Column("created_at", cloudsign.storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", cloudsign.storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("argon2_salt", sa.LargeBinary(length=32), nullable=False),
        sa.Column("argon2_time_cost", sa.Integer(), nullable=False),
        sa.Column("argon2_memory_kib", sa.Integer(), nullable=False),
        sa.Column("argon2_parallelism", sa.Integer(), nullable=False),
        sa.Column("totp_sealed", sa.LargeBinary(), nullable=True),
        sa.Column(
            "totp_confirmed_at", cloudsign.storage.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("totp_last_step", sa.BigInteger(), nullable=True),
        sa.Column("face_template_sealed", sa.LargeBinary(), nullable=True),
        sa.Column(
            "face_enrolled_at", cloudsign.storage.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.CheckConstraint("kind IN ('person', 'organisation')", name=op.f("ck_owners_kind")),
        sa.CheckConstraint("status IN ('active', 'deleted')", name=op.f("ck_owners_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_owners")),
    )
    with op.batch_alter_table("owners", schema=None) as batch_op:
        batch_op.create_index(
            "uq_owners_identity",
            ["kind", "iin", "bin"],
            unique=True,
            sqlite_where=sa.text("status = 'active'"),
            postgresql_where=sa.text("status = 'active'"),
        )

    op.create_table(
        "access_tokens",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("owner_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", cloudsign.storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", cloudsign.storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked", sa.Boolean(), server_default=sa.text("(false)"), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["owners.id"], name=op.f("fk_access_tokens_owner_id_owners")
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_access_tokens")),
    )
    with op.batch_alter_table("access_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_access_tokens_owner_id"), ["owner_id"], unique=False)

    op.create_table(
        "consents",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("owner_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("text_version", sa.String(length=32), nullable=False),
        sa.Column("text_sha256", sa.String(length=64), nullable=False),
        sa.Column(
            "accepted_at", cloudsign.storage.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["owners.id"], name=op.f("fk_consents_owner_id_owners")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consents")),
        sa.UniqueConstraint(
            "owner_id", "kind", "text_version", name="uq_consents_owner_kind_version"
        ),
    )
    op.create_table(
        "credentials",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("owner_id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("key_algorithm", sa.String(length=16), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("key_blob", sa.LargeBinary(), nullable=True),
        sa.Column("certificate_serial", sa.String(length=40), nullable=True),
        sa.Column("created_at", cloudsign.storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", cloudsign.storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("failed_attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "locked_until", cloudsign.storage.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.CheckConstraint("status IN ('active', 'deleted')", name=op.f("ck_credentials_status")),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["owners.id"], name=op.f("fk_credentials_owner_id_owners")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credentials")),
    )
    with op.batch_alter_table("credentials", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_credentials_owner_id"), ["owner_id"], unique=False)
        batch_op.create_index(
            "uq_credentials_active_owner",
            ["owner_id"],
            unique=True,
            sqlite_where=sa.text("status = 'active'"),
            postgresql_where=sa.text("status = 'active'"),
        )

    op.create_table(
        "transport_keys",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("owner_id", sa.String(length=36), nullable=False),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", cloudsign.storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", cloudsign.storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", cloudsign.storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["owners.id"], name=op.f("fk_transport_keys_owner_id_owners")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transport_keys")),
    )
    with op.batch_alter_table("transport_keys", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_transport_keys_expires_at"), ["expires_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_transport_keys_owner_id"), ["owner_id"], unique=False)

    op.create_table(
        "certificates",
        sa.Column("serial", sa.String(length=40), nullable=False),
        sa.Column("owner_id", sa.String(length=36), nullable=True),
        sa.Column("credential_id", sa.String(length=36), nullable=True),
        sa.Column("subject", sa.String(length=1000), nullable=False),
        sa.Column("issuer", sa.String(length=1000), nullable=False),
        sa.Column("not_before", cloudsign.storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("not_after", cloudsign.storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("der", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="good", nullable=False),
        sa.Column("revoked_at", cloudsign.storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revocation_reason", sa.String(length=32), nullable=True),
        sa.Column("issued_at", cloudsign.storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('good', 'revoked')", name=op.f("ck_certificates_status")),
        sa.ForeignKeyConstraint(
            ["credential_id"],
            ["credentials.id"],
            name=op.f("fk_certificates_credential_id_credentials"),
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["owners.id"], name=op.f("fk_certificates_owner_id_owners")
        ),
        sa.PrimaryKeyConstraint("serial", name=op.f("pk_certificates")),
    )
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_certificates_owner_id"), ["owner_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_certificates_owner_id"))

    op.drop_table("certificates")
    with op.batch_alter_table("transport_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_transport_keys_owner_id"))
        batch_op.drop_index(batch_op.f("ix_transport_keys_expires_at"))

    op.drop_table("transport_keys")
    with op.batch_alter_table("credentials", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_credentials_active_owner",
            sqlite_where=sa.text("status = 'active'"),
            postgresql_where=sa.text("status = 'active'"),
        )
        batch_op.drop_index(batch_op.f("ix_credentials_owner_id"))

    op.drop_table("credentials")
    op.drop_table("consents")
    with op.batch_alter_table("access_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_access_tokens_owner_id"))

    op.drop_table("access_tokens")
    with op.batch_alter_table("owners", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_owners_identity",
            sqlite_where=sa.text("status = 'active'"),
            postgresql_where=sa.text("status = 'active'"),
        )

    op.drop_table("owners")
    op.drop_table("events")
