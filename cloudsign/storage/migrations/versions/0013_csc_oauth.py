"""CSC oauth2code: relying parties' OAuth redirect URIs, and the
authorisations a phone approves for an OAuth client

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

from cloudsign.storage.types import UTCDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("relying_parties") as batch:
        batch.add_column(sa.Column("oauth_redirect_uris", sa.JSON()))
    op.create_table(
        "csc_oauth_grants",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("handle_hash", sa.String(64), nullable=False),
        sa.Column("code_hash", sa.String(64)),
        sa.Column(
            "relying_party_id",
            sa.String(36),
            sa.ForeignKey(
                "relying_parties.id",
                name=op.f("fk_csc_oauth_grants_relying_party_id_relying_parties"),
            ),
            nullable=False,
        ),
        sa.Column("redirect_uri", sa.String(400), nullable=False),
        sa.Column("state", sa.String(512)),
        sa.Column("code_challenge", sa.String(128), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column(
            "request_id",
            sa.String(36),
            sa.ForeignKey(
                "signing_requests.id", name=op.f("fk_csc_oauth_grants_request_id_signing_requests")
            ),
            nullable=False,
        ),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("code_expires_at", UTCDateTime()),
        sa.CheckConstraint(
            "status IN ('pending', 'code', 'used', 'refused')",
            name=op.f("ck_csc_oauth_grants_status"),
        ),
        sa.UniqueConstraint("handle_hash", name=op.f("uq_csc_oauth_grants_handle_hash")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_csc_oauth_grants_code_hash")),
        sa.UniqueConstraint("request_id", name=op.f("uq_csc_oauth_grants_request_id")),
    )


def downgrade() -> None:
    op.drop_table("csc_oauth_grants")
    with op.batch_alter_table("relying_parties") as batch:
        batch.drop_column("oauth_redirect_uris")
