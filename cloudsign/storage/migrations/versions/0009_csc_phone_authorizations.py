"""signing requests of CSC clients: `credentials/authorize` approved on the phone

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("signing_requests") as batch:
        batch.drop_constraint(op.f("ck_signing_requests_origin"), type_="check")
        batch.create_check_constraint(
            op.f("ck_signing_requests_origin"), "origin IN ('portal', 'rp', 'csc')"
        )


def downgrade() -> None:
    op.execute(
        "DELETE FROM signing_request_documents WHERE request_id IN "
        "(SELECT id FROM signing_requests WHERE origin = 'csc')"
    )
    op.execute("DELETE FROM signing_requests WHERE origin = 'csc'")
    with op.batch_alter_table("signing_requests") as batch:
        batch.drop_constraint(op.f("ck_signing_requests_origin"), type_="check")
        batch.create_check_constraint(
            op.f("ck_signing_requests_origin"), "origin IN ('portal', 'rp')"
        )
