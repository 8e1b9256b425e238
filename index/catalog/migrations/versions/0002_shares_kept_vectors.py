"""Shares (root identity, held deletions); deleted documents' kept vectors; content hash index.

Revision ID: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("documents") as batch:
        batch.add_column(sa.Column("kept_until", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_documents_content_hash", "documents", ["content_hash"])
    op.create_table(
        "shares",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("root", sa.String(300), nullable=True),
        sa.Column("held", sa.Integer, nullable=False, server_default="0"),
        sa.Column("held_reason", sa.Text, nullable=True),
        sa.Column("held_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("confirmed", sa.Boolean, nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    op.drop_table("shares")
    op.drop_index("ix_documents_content_hash", "documents")
    with op.batch_alter_table("documents") as batch:
        batch.drop_column("kept_until")
