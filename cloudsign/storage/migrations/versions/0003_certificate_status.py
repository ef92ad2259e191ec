"""certificate status

Revision ID: 0003
Revises: 0002

Reserved in sequence for the status services (issue 6) tables, so that work on separate
features does not fork the migration history; filled in by that feature.
"""

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
