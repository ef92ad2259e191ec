"""audit log

Revision ID: 0002
Revises: 0001

Reserved in sequence for the audit (issue 5) tables, so that work on separate
features does not fork the migration history; filled in by that feature.
"""

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
