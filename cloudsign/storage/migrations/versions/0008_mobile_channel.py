"""mobile channel: bound devices, their one-time challenges and push
subscriptions, relying parties, signing requests

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

import cloudsign.storage.types

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

UTC = cloudsign.storage.types.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "device_challenges",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("owner_id", sa.String(length=36), nullable=False),
        sa.Column("purpose", sa.String(length=64), nullable=False),
        sa.Column("challenge_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTC(timezone=True), nullable=False),
        sa.Column("expires_at", UTC(timezone=True), nullable=False),
        sa.Column("used_at", UTC(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["owners.id"], name=op.f("fk_device_challenges_owner_id_owners")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_challenges")),
        sa.UniqueConstraint("challenge_hash", name=op.f("uq_device_challenges_challenge_hash")),
    )
    with op.batch_alter_table("device_challenges", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_device_challenges_owner_id"), ["owner_id"], unique=False
        )

    op.create_table(
        "devices",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("owner_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("credential_id", sa.LargeBinary(), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("sign_count", sa.BigInteger(), nullable=False),
        sa.Column("aaguid", sa.String(length=36), nullable=False),
        sa.Column("created_at", UTC(timezone=True), nullable=False),
        sa.Column("last_used_at", UTC(timezone=True), nullable=True),
        sa.Column("revoked_at", UTC(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["owners.id"], name=op.f("fk_devices_owner_id_owners")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_devices")),
        sa.UniqueConstraint("credential_id", name=op.f("uq_devices_credential_id")),
    )
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_devices_owner_id"), ["owner_id"], unique=False)

    op.create_table(
        "relying_parties",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("callback_prefix", sa.String(length=400), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", UTC(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=36), nullable=True),
        sa.CheckConstraint(
            "status IN ('active', 'disabled')", name=op.f("ck_relying_parties_status")
        ),
        sa.ForeignKeyConstraint(
            ["created_by"], ["operators.id"], name=op.f("fk_relying_parties_created_by_operators")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_relying_parties")),
        sa.UniqueConstraint("client_id", name=op.f("uq_relying_parties_client_id")),
    )
    op.create_table(
        "push_subscriptions",
        sa.Column("device_id", sa.String(length=36), nullable=False),
        sa.Column("endpoint", sa.String(length=2000), nullable=False),
        sa.Column("client_keys", sa.JSON(), nullable=False),
        sa.Column("created_at", UTC(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_push_subscriptions_device_id_devices")
        ),
        sa.PrimaryKeyConstraint("device_id", name=op.f("pk_push_subscriptions")),
    )
    op.create_table(
        "signing_requests",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column("relying_party_id", sa.String(length=36), nullable=True),
        sa.Column("requester_name", sa.String(length=200), nullable=False),
        sa.Column("owner_id", sa.String(length=36), nullable=True),
        sa.Column("credential_id", sa.String(length=36), nullable=True),
        sa.Column("open_to_scan", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("callback_url", sa.String(length=400), nullable=True),
        sa.Column("callback_status", sa.String(length=16), nullable=True),
        sa.Column("display_text", sa.String(length=1000), nullable=False),
        sa.Column("hash_algorithm", sa.String(length=16), nullable=False),
        sa.Column("commitment", sa.LargeBinary(), nullable=False),
        sa.Column("verification_code", sa.String(length=4), nullable=False),
        sa.Column("level", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", UTC(timezone=True), nullable=False),
        sa.Column("expires_at", UTC(timezone=True), nullable=False),
        sa.Column("decided_at", UTC(timezone=True), nullable=True),
        sa.Column("device_id", sa.String(length=36), nullable=True),
        sa.Column("failed_approvals", sa.Integer(), server_default="0", nullable=False),
        sa.Column("error", sa.String(length=200), nullable=True),
        sa.CheckConstraint("origin IN ('portal', 'rp')", name=op.f("ck_signing_requests_origin")),
        sa.CheckConstraint(
            "status IN ('pending', 'approved', 'declined', 'expired', 'failed')",
            name=op.f("ck_signing_requests_status"),
        ),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_signing_requests_device_id_devices")
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["owners.id"], name=op.f("fk_signing_requests_owner_id_owners")
        ),
        sa.ForeignKeyConstraint(
            ["relying_party_id"],
            ["relying_parties.id"],
            name=op.f("fk_signing_requests_relying_party_id_relying_parties"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signing_requests")),
    )
    with op.batch_alter_table("signing_requests", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_signing_requests_owner_id"), ["owner_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_signing_requests_relying_party_id"), ["relying_party_id"], unique=False
        )

    op.create_table(
        "signing_request_documents",
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("document_hash", sa.LargeBinary(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=True),
        sa.Column("content_type", sa.String(length=100), nullable=True),
        sa.Column("signature", sa.LargeBinary(), nullable=True),
        sa.Column("signature_id", sa.String(length=36), nullable=True),
        sa.CheckConstraint(
            "format IN ('cades', 'pades', 'raw')", name=op.f("ck_signing_request_documents_format")
        ),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["signing_requests.id"],
            name=op.f("fk_signing_request_documents_request_id_signing_requests"),
        ),
        sa.UniqueConstraint("request_id", "position", name="uq_signing_request_documents"),
    )


def downgrade() -> None:
    op.drop_table("signing_request_documents")
    with op.batch_alter_table("signing_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_signing_requests_relying_party_id"))
        batch_op.drop_index(batch_op.f("ix_signing_requests_owner_id"))

    op.drop_table("signing_requests")
    op.drop_table("push_subscriptions")
    op.drop_table("relying_parties")
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_devices_owner_id"))

    op.drop_table("devices")
    with op.batch_alter_table("device_challenges", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_device_challenges_owner_id"))

    op.drop_table("device_challenges")
