"""signing requests: XML documents signed in XAdES on the phone's approval
(document format `xades`)

Revision ID: 0012
Revises: 0011
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

OLD_FORMAT = "format IN ('cades', 'pades', 'raw')"
NEW_FORMAT = "format IN ('cades', 'pades', 'xades', 'raw')"


def _format(check: str) -> None:
    # Batch mode: SQLite rebuilds the table with the new CHECK; PostgreSQL
    # drops and adds the constraint in place.
    with op.batch_alter_table("signing_request_documents") as batch:
        batch.drop_constraint(op.f("ck_signing_request_documents_format"), type_="check")
        batch.create_check_constraint(op.f("ck_signing_request_documents_format"), check)


def upgrade() -> None:
    _format(NEW_FORMAT)


def downgrade() -> None:
    # Requests with an XML document cannot stay under the old check: they go
    # with their documents (an eGov procedure keeps its row, unlinked).
    op.execute(
        "CREATE TEMPORARY TABLE xml_requests AS SELECT DISTINCT request_id "
        "FROM signing_request_documents WHERE format = 'xades'"
    )
    op.execute(
        "UPDATE egov_procedures SET request_id = NULL "
        "WHERE request_id IN (SELECT request_id FROM xml_requests)"
    )
    op.execute(
        "DELETE FROM signing_request_documents "
        "WHERE request_id IN (SELECT request_id FROM xml_requests)"
    )
    op.execute("DELETE FROM signing_requests WHERE id IN (SELECT request_id FROM xml_requests)")
    op.execute("DROP TABLE xml_requests")
    _format(OLD_FORMAT)
