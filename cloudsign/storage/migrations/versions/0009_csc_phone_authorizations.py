"""signing requests: CSC clients' `credentials/authorize` approved on the
phone (origin `csc`); the `signing` state between an approval and its stored
signatures; requests withdrawn by their requester

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

OLD_STATUS = "status IN ('pending', 'approved', 'declined', 'expired', 'failed')"
NEW_STATUS = (
    "status IN ('pending', 'signing', 'approved', 'declined', 'expired', 'failed', 'withdrawn')"
)


def _constraints(origin: str, status: str) -> None:
    with op.batch_alter_table("signing_requests") as batch:
        batch.drop_constraint(op.f("ck_signing_requests_origin"), type_="check")
        batch.create_check_constraint(op.f("ck_signing_requests_origin"), origin)
        batch.drop_constraint(op.f("ck_signing_requests_status"), type_="check")
        batch.create_check_constraint(op.f("ck_signing_requests_status"), status)


def upgrade() -> None:
    _constraints("origin IN ('portal', 'rp', 'csc')", NEW_STATUS)


def downgrade() -> None:
    op.execute(
        "DELETE FROM signing_request_documents WHERE request_id IN "
        "(SELECT id FROM signing_requests WHERE origin = 'csc')"
    )
    op.execute("DELETE FROM signing_requests WHERE origin = 'csc'")
    op.execute("UPDATE signing_requests SET status = 'failed' WHERE status = 'signing'")
    op.execute("UPDATE signing_requests SET status = 'declined' WHERE status = 'withdrawn'")
    _constraints("origin IN ('portal', 'rp')", OLD_STATUS)
