"""A share's own permissions (the share layer of readers), as the last pass read them.

Revision ID: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("shares") as batch:
        batch.add_column(sa.Column("acl", sa.Text, nullable=True))
        batch.add_column(sa.Column("acl_deny", sa.Text, nullable=True))
        batch.add_column(sa.Column("acl_origin", sa.String(20), nullable=True))
        batch.add_column(sa.Column("acl_warning", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("shares") as batch:
        for column in ("acl_warning", "acl_origin", "acl_deny", "acl"):
            batch.drop_column(column)
