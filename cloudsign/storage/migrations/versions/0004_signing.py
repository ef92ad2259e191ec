"""signing: face challenges, seen frames, signed documents (personal cabinet)

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

import cloudsign.storage.types

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UTC = cloudsign.storage.types.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "face_challenges",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("owner_id", sa.String(length=36), nullable=False),
        sa.Column("challenge", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("created_at", UTC(timezone=True), nullable=False),
        sa.Column("expires_at", UTC(timezone=True), nullable=False),
        sa.Column("decided_at", UTC(timezone=True), nullable=True),
        sa.Column("consumed_at", UTC(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["owners.id"], name=op.f("fk_face_challenges_owner_id_owners")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_face_challenges")),
    )
    op.create_index(
        op.f("ix_face_challenges_owner_id"), "face_challenges", ["owner_id"], unique=False
    )
    op.create_table(
        "face_frames_seen",
        sa.Column("owner_id", sa.String(length=36), nullable=False),
        sa.Column("frame_sha256", sa.String(length=64), nullable=False),
        sa.Column("seen_at", UTC(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["owners.id"], name=op.f("fk_face_frames_seen_owner_id_owners")
        ),
        sa.PrimaryKeyConstraint("owner_id", "frame_sha256", name=op.f("pk_face_frames_seen")),
    )
    op.create_table(
        "signed_documents",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("owner_id", sa.String(length=36), nullable=False),
        sa.Column("credential_id", sa.String(length=36), nullable=False),
        sa.Column("certificate_serial", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=400), nullable=True),
        sa.Column("hash_algorithm", sa.String(length=16), nullable=False),
        sa.Column("document_hash", sa.String(length=128), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.Column("signed_at", UTC(timezone=True), nullable=False),
        sa.Column("keep_until", UTC(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["credential_id"],
            ["credentials.id"],
            name=op.f("fk_signed_documents_credential_id_credentials"),
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["owners.id"], name=op.f("fk_signed_documents_owner_id_owners")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signed_documents")),
    )
    op.create_index(
        "ix_signed_documents_owner_signed_at",
        "signed_documents",
        ["owner_id", "signed_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_signed_documents_owner_signed_at", table_name="signed_documents")
    op.drop_table("signed_documents")
    op.drop_table("face_frames_seen")
    op.drop_index(op.f("ix_face_challenges_owner_id"), table_name="face_challenges")
    op.drop_table("face_challenges")
