"""feature tables: face templates out of owners, lockouts out of credentials

The face template belongs to the face factor and the failure count to
signing's lockout; each moves to a table of its own feature, data included.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

import cloudsign.storage.types

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

UTC = cloudsign.storage.types.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "face_templates",
        sa.Column("owner_id", sa.String(length=36), nullable=False),
        sa.Column("template_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("enrolled_at", UTC(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["owners.id"], name=op.f("fk_face_templates_owner_id_owners")
        ),
        sa.PrimaryKeyConstraint("owner_id", name=op.f("pk_face_templates")),
    )
    op.execute(
        "INSERT INTO face_templates (owner_id, template_sealed, enrolled_at) "
        "SELECT id, face_template_sealed, face_enrolled_at FROM owners "
        "WHERE face_template_sealed IS NOT NULL"
    )
    op.create_table(
        "credential_lockouts",
        sa.Column("credential_id", sa.String(length=36), nullable=False),
        sa.Column("failed_attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("locked_until", UTC(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["credential_id"],
            ["credentials.id"],
            name=op.f("fk_credential_lockouts_credential_id_credentials"),
        ),
        sa.PrimaryKeyConstraint("credential_id", name=op.f("pk_credential_lockouts")),
    )
    op.execute(
        "INSERT INTO credential_lockouts (credential_id, failed_attempts, locked_until) "
        "SELECT id, failed_attempts, locked_until FROM credentials "
        "WHERE failed_attempts <> 0 OR locked_until IS NOT NULL"
    )
    with op.batch_alter_table("owners") as batch:
        batch.drop_column("face_template_sealed")
        batch.drop_column("face_enrolled_at")
    with op.batch_alter_table("credentials") as batch:
        batch.drop_column("failed_attempts")
        batch.drop_column("locked_until")


def downgrade() -> None:
    with op.batch_alter_table("credentials") as batch:
        batch.add_column(sa.Column("locked_until", UTC(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("failed_attempts", sa.Integer(), server_default="0", nullable=False)
        )
    with op.batch_alter_table("owners") as batch:
        batch.add_column(sa.Column("face_enrolled_at", UTC(timezone=True), nullable=True))
        batch.add_column(sa.Column("face_template_sealed", sa.LargeBinary(), nullable=True))
    op.execute(
        "UPDATE credentials SET failed_attempts = l.failed_attempts, locked_until = l.locked_until "
        "FROM credential_lockouts AS l WHERE l.credential_id = credentials.id"
    )
    op.execute(
        "UPDATE owners SET face_template_sealed = t.template_sealed, "
        "face_enrolled_at = t.enrolled_at FROM face_templates AS t WHERE t.owner_id = owners.id"
    )
    op.drop_table("credential_lockouts")
    op.drop_table("face_templates")
