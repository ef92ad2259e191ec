"""signing

Revision ID: 0004
Revises: 0003

Reserved in sequence for the signing (issue 4) tables, so that work on separate
features does not fork the migration history; filled in by that feature.
"""

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
