"""SADs shared by every process: the authorisation and its hashes in the
database, the owner key sealed under a per-SAD HSM key; the SAD of a CSC
phone approval waits sealed on its request

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

import cloudsign.storage.types

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

UTC = cloudsign.storage.types.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "sads",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("digest", sa.LargeBinary(length=32), nullable=False),
        sa.Column("owner_id", sa.String(length=36), nullable=False),
        sa.Column("credential_id", sa.String(length=36), nullable=False),
        sa.Column("certificate_serial", sa.String(length=40), nullable=False),
        sa.Column("hash_alg", sa.String(length=16), nullable=True),
        sa.Column("num_signatures", sa.Integer(), nullable=False),
        sa.Column("factors", sa.String(length=64), nullable=False),
        sa.Column("key_algorithm", sa.String(length=32), nullable=False),
        sa.Column("sealed_key", sa.LargeBinary(), nullable=False),
        sa.Column("key_expiry", sa.Integer(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("created_at", UTC(timezone=True), nullable=False),
        sa.Column("expires_at", UTC(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sads")),
        sa.UniqueConstraint("digest", name=op.f("uq_sads_digest")),
    )
    with op.batch_alter_table("sads", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sads_owner_id"), ["owner_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_sads_expires_at"), ["expires_at"], unique=False)
    op.create_table(
        "sad_hashes",
        sa.Column("sad_id", sa.String(length=36), nullable=False),
        sa.Column("hash", sa.LargeBinary(length=64), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.ForeignKeyConstraint(
            ["sad_id"], ["sads.id"], name=op.f("fk_sad_hashes_sad_id_sads"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("sad_id", "hash", name=op.f("pk_sad_hashes")),
    )
    with op.batch_alter_table("signing_requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sealed_sad", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("signing_requests", schema=None) as batch_op:
        batch_op.drop_column("sealed_sad")
    op.drop_table("sad_hashes")
    with op.batch_alter_table("sads", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sads_expires_at"))
        batch_op.drop_index(batch_op.f("ix_sads_owner_id"))
    op.drop_table("sads")
