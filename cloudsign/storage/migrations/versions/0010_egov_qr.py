"""eGov QR signing: the procedures a phone scanned, and each relying
party's eGov URL prefix

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

import cloudsign.storage.types

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

UTC = cloudsign.storage.types.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "egov_procedures",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("link_hash", sa.String(length=64), nullable=False),
        sa.Column("relying_party_id", sa.String(length=36), nullable=False),
        sa.Column("owner_id", sa.String(length=36), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=True),
        sa.Column("api2_uri", sa.String(length=2000), nullable=True),
        sa.Column("auth_type", sa.String(length=8), nullable=True),
        sa.Column("auth_token", sa.LargeBinary(), nullable=True),
        sa.Column("sign_method", sa.String(length=24), nullable=True),
        sa.Column("documents", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("error", sa.String(length=200), nullable=True),
        sa.Column("created_at", UTC(timezone=True), nullable=False),
        sa.Column("finished_at", UTC(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["owners.id"], name=op.f("fk_egov_procedures_owner_id_owners")
        ),
        sa.ForeignKeyConstraint(
            ["relying_party_id"],
            ["relying_parties.id"],
            name=op.f("fk_egov_procedures_relying_party_id_relying_parties"),
        ),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["signing_requests.id"],
            name=op.f("fk_egov_procedures_request_id_signing_requests"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_egov_procedures")),
        sa.UniqueConstraint("link_hash", name=op.f("uq_egov_procedures_link_hash")),
        sa.UniqueConstraint("request_id", name=op.f("uq_egov_procedures_request_id")),
    )
    with op.batch_alter_table("egov_procedures", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_egov_procedures_owner_id"), ["owner_id"], unique=False)

    with op.batch_alter_table("relying_parties", schema=None) as batch_op:
        batch_op.add_column(sa.Column("egov_prefix", sa.String(length=400), nullable=True))
        batch_op.create_unique_constraint(
            batch_op.f("uq_relying_parties_egov_prefix"), ["egov_prefix"]
        )


def downgrade() -> None:
    with op.batch_alter_table("relying_parties", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_relying_parties_egov_prefix"), type_="unique")
        batch_op.drop_column("egov_prefix")

    with op.batch_alter_table("egov_procedures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_egov_procedures_owner_id"))

    op.drop_table("egov_procedures")
