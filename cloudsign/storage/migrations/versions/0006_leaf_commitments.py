"""leaf commitments: each v2 leaf's salt, and events by owner

Leaves sequenced from now on are v2 (audit_chain.CommittedLeaf): public
index, type, time and a salted commitment to the rest. The salt is stored
beside the leaf; leaves logged before keep a NULL salt and stay v1 (their
days are anchored with v1 leaf hashes and cannot be rewritten). The owner's
own log view finds their events through the new index on events.owner_id.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("log_leaves") as batch:
        batch.add_column(sa.Column("salt", sa.LargeBinary(length=32), nullable=True))
    op.create_index("ix_events_owner_id", "events", ["owner_id"], unique=False)


def downgrade() -> None:
    # Downgrading leaves v2 leaves that nobody can open any more: their salts
    # are gone. The leaves and proofs themselves keep working.
    op.drop_index("ix_events_owner_id", table_name="events")
    with op.batch_alter_table("log_leaves") as batch:
        batch.drop_column("salt")
