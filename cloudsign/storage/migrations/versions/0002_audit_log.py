"""audit log: sequenced leaves, log head, day checkpoints, anchors

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

import cloudsign.storage.types

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UTC = cloudsign.storage.types.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "log_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("tree_size", sa.BigInteger(), nullable=False),
        sa.Column("last_time", UTC(timezone=True), nullable=True),
        sa.Column("closed_until", UTC(timezone=True), nullable=True),
        sa.Column("first_day", sa.Date(), nullable=False),
        sa.Column("contract_address", sa.String(length=42), nullable=True),
        sa.Column("chain_id", sa.BigInteger(), nullable=True),
        sa.CheckConstraint("id = 1", name=op.f("ck_log_head_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_log_head")),
    )
    op.create_table(
        "log_leaves",
        sa.Column("leaf_index", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("event_seq", sa.BigInteger(), nullable=False),
        sa.Column("leaf", sa.LargeBinary(), nullable=True),
        sa.Column("leaf_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("sequenced_at", UTC(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("leaf_index", name=op.f("pk_log_leaves")),
        sa.UniqueConstraint("event_seq", name=op.f("uq_log_leaves_event_seq")),
    )
    op.create_index(op.f("ix_log_leaves_leaf_hash"), "log_leaves", ["leaf_hash"], unique=False)
    op.create_index(
        op.f("ix_log_leaves_sequenced_at"), "log_leaves", ["sequenced_at"], unique=False
    )
    op.create_table(
        "log_checkpoints",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("tree_size", sa.BigInteger(), nullable=False),
        sa.Column("root", sa.LargeBinary(length=32), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", UTC(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_log_checkpoints")),
    )
    op.create_table(
        "log_anchors",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("contract", sa.String(length=42), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("tx_hash", sa.String(length=66), nullable=True),
        sa.Column("block_number", sa.BigInteger(), nullable=True),
        sa.Column("confirmations", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=400), nullable=True),
        sa.Column("updated_at", UTC(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'submitted', 'confirmed', 'conflict')",
            name=op.f("ck_log_anchors_status"),
        ),
        sa.ForeignKeyConstraint(
            ["day"], ["log_checkpoints.day"], name=op.f("fk_log_anchors_day_log_checkpoints")
        ),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_log_anchors")),
    )


def downgrade() -> None:
    op.drop_table("log_anchors")
    op.drop_table("log_checkpoints")
    op.drop_index(op.f("ix_log_leaves_sequenced_at"), table_name="log_leaves")
    op.drop_index(op.f("ix_log_leaves_leaf_hash"), table_name="log_leaves")
    op.drop_table("log_leaves")
    op.drop_table("log_head")
