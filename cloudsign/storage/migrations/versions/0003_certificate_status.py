"""certificate status

Revision ID: 0003
Revises: 0002

The status services (issue 6): published CRLs, compromise notices, and an
index on certificates.revoked_at for the revocation watcher.
"""

import sqlalchemy as sa
from alembic import op

import cloudsign.storage.types

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "crls",
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("crl_number", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("base_crl_number", sa.BigInteger(), nullable=True),
        sa.Column(
            "this_update", cloudsign.storage.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "next_update", cloudsign.storage.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("entries", sa.Integer(), nullable=False),
        sa.Column("der", sa.LargeBinary(), nullable=False),
        sa.CheckConstraint("kind IN ('full', 'delta')", name=op.f("ck_crls_kind")),
        sa.PrimaryKeyConstraint("scope", "crl_number", name=op.f("pk_crls")),
    )
    op.create_table(
        "notices",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column(
            "published_at", cloudsign.storage.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("measures", sa.Text(), nullable=False),
        sa.Column("serials", sa.JSON(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notices")),
    )
    op.create_index(op.f("ix_notices_published_at"), "notices", ["published_at"], unique=False)
    op.create_index("ix_certificates_revoked_at", "certificates", ["revoked_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_certificates_revoked_at", table_name="certificates")
    op.drop_index(op.f("ix_notices_published_at"), table_name="notices")
    op.drop_table("notices")
    op.drop_table("crls")
