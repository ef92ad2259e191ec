"""lifecycle: identity proofing, operators, the guard's counters, pending
accounts and token scopes, consent languages

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

import cloudsign.storage.types

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

UTC = cloudsign.storage.types.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "guard_counters",
        sa.Column("limit_name", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("window_start", UTC(timezone=True), nullable=False),
        sa.Column("locked_until", UTC(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("limit_name", "subject", name="pk_guard_counters"),
    )
    op.create_table(
        "operators",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=True),
        sa.Column("totp_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("totp_confirmed_at", UTC(timezone=True), nullable=True),
        sa.Column("totp_last_step", sa.BigInteger(), nullable=True),
        sa.Column("setup_code_hash", sa.String(length=64), nullable=True),
        sa.Column("setup_expires_at", UTC(timezone=True), nullable=True),
        sa.Column("created_at", UTC(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=36), nullable=True),
        sa.CheckConstraint(
            "status IN ('setup', 'active', 'disabled')", name=op.f("ck_operators_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operators")),
        sa.UniqueConstraint("username", name=op.f("uq_operators_username")),
    )
    op.create_table(
        "operator_sessions",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("operator_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", UTC(timezone=True), nullable=False),
        sa.Column("expires_at", UTC(timezone=True), nullable=False),
        sa.Column("revoked", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.ForeignKeyConstraint(
            ["operator_id"],
            ["operators.id"],
            name=op.f("fk_operator_sessions_operator_id_operators"),
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_operator_sessions")),
    )
    op.create_index(
        op.f("ix_operator_sessions_operator_id"), "operator_sessions", ["operator_id"], unique=False
    )
    op.create_table(
        "approvals",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("requested_by", sa.String(length=36), nullable=False),
        sa.Column("requested_at", UTC(timezone=True), nullable=False),
        sa.Column("expires_at", UTC(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("decided_by", sa.String(length=36), nullable=True),
        sa.Column("decided_at", UTC(timezone=True), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'done', 'rejected', 'failed')", name=op.f("ck_approvals_status")
        ),
        sa.ForeignKeyConstraint(
            ["decided_by"], ["operators.id"], name=op.f("fk_approvals_decided_by_operators")
        ),
        sa.ForeignKeyConstraint(
            ["requested_by"], ["operators.id"], name=op.f("fk_approvals_requested_by_operators")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approvals")),
    )
    op.create_table(
        "face_captures",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("operator_id", sa.String(length=36), nullable=True),
        sa.Column("iin", sa.String(length=12), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("challenge", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("template_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", UTC(timezone=True), nullable=False),
        sa.Column("expires_at", UTC(timezone=True), nullable=False),
        sa.CheckConstraint("purpose IN ('desk', 'remote')", name=op.f("ck_face_captures_purpose")),
        sa.ForeignKeyConstraint(
            ["operator_id"], ["operators.id"], name=op.f("fk_face_captures_operator_id_operators")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_face_captures")),
    )
    op.create_table(
        "proofings",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("iin", sa.String(length=12), nullable=False),
        sa.Column("bin", sa.String(length=12), server_default="", nullable=False),
        sa.Column("surname", sa.String(length=200), nullable=False),
        sa.Column("given_name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("organisation", sa.String(length=400), server_default="", nullable=False),
        sa.Column("document", sa.JSON(), nullable=True),
        sa.Column("operator_id", sa.String(length=36), nullable=True),
        sa.Column("registry_reference", sa.String(length=128), nullable=True),
        sa.Column("template_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("activation_code_hash", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", UTC(timezone=True), nullable=False),
        sa.Column("expires_at", UTC(timezone=True), nullable=False),
        sa.Column("redeemed_at", UTC(timezone=True), nullable=True),
        sa.Column("owner_id", sa.String(length=36), nullable=True),
        sa.CheckConstraint("method IN ('desk', 'registry')", name=op.f("ck_proofings_method")),
        sa.CheckConstraint(
            "status IN ('issued', 'redeemed', 'used')", name=op.f("ck_proofings_status")
        ),
        sa.ForeignKeyConstraint(
            ["operator_id"], ["operators.id"], name=op.f("fk_proofings_operator_id_operators")
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["owners.id"], name=op.f("fk_proofings_owner_id_owners")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_proofings")),
        sa.UniqueConstraint("activation_code_hash", name=op.f("uq_proofings_activation_code_hash")),
    )
    op.create_index(op.f("ix_proofings_iin"), "proofings", ["iin"], unique=False)
    # Owners: pending accounts of proofed identities.
    with op.batch_alter_table("owners") as batch:
        batch.add_column(sa.Column("pending_until", UTC(timezone=True), nullable=True))
        batch.add_column(sa.Column("proofing_id", sa.String(length=36), nullable=True))
        batch.drop_constraint(op.f("ck_owners_status"), type_="check")
        batch.create_check_constraint(
            op.f("ck_owners_status"), "status IN ('pending', 'active', 'deleted', 'lapsed')"
        )
    with op.batch_alter_table("access_tokens") as batch:
        batch.add_column(
            sa.Column("scope", sa.String(length=16), server_default="full", nullable=False)
        )
        batch.add_column(sa.Column("proofing_id", sa.String(length=36), nullable=True))
    with op.batch_alter_table("consents") as batch:
        batch.add_column(
            sa.Column("language", sa.String(length=8), server_default="en", nullable=False)
        )
    with op.batch_alter_table("transport_keys") as batch:
        batch.alter_column("owner_id", existing_type=sa.String(length=36), nullable=True)
    # The guard's counters replace the per-credential lockout rows.
    op.drop_table("credential_lockouts")


def downgrade() -> None:
    op.create_table(
        "credential_lockouts",
        sa.Column("credential_id", sa.String(length=36), nullable=False),
        sa.Column("failed_attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("locked_until", UTC(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["credential_id"],
            ["credentials.id"],
            name=op.f("fk_credential_lockouts_credential_id_credentials"),
        ),
        sa.PrimaryKeyConstraint("credential_id", name=op.f("pk_credential_lockouts")),
    )
    with op.batch_alter_table("transport_keys") as batch:
        batch.alter_column("owner_id", existing_type=sa.String(length=36), nullable=False)
    with op.batch_alter_table("consents") as batch:
        batch.drop_column("language")
    with op.batch_alter_table("access_tokens") as batch:
        batch.drop_column("proofing_id")
        batch.drop_column("scope")
    with op.batch_alter_table("owners") as batch:
        batch.drop_constraint(op.f("ck_owners_status"), type_="check")
        batch.create_check_constraint(op.f("ck_owners_status"), "status IN ('active', 'deleted')")
        batch.drop_column("proofing_id")
        batch.drop_column("pending_until")
    for table in ("proofings", "face_captures", "approvals", "operator_sessions", "operators"):
        op.drop_table(table)
    op.drop_table("guard_counters")
