"""The catalog as the first releases made it (before the schema was versioned).

Revision ID: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def baseline() -> sa.MetaData:
    """The tables of release 0.1 (what an unversioned catalog is brought to, then stamped)."""
    meta = sa.MetaData()
    tz = sa.DateTime(timezone=True)
    sa.Table(
        "documents", meta,
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("share", sa.String(200), index=True),
        sa.Column("path", sa.Text),
        sa.Column("size", sa.BigInteger),
        sa.Column("mtime_ns", sa.BigInteger),
        sa.Column("content_hash", sa.String(64), nullable=True),
        sa.Column("version", sa.Integer),
        sa.Column("next_version", sa.Integer),
        sa.Column("pending_hash", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), index=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("chunk_count", sa.Integer),
        sa.Column("filetype", sa.String(16), nullable=True),
        sa.Column("acl", sa.Text),
        sa.Column("acl_deny", sa.Text),
        sa.Column("acl_note", sa.Text, nullable=True),
        sa.Column("attempts", sa.Integer),
        sa.Column("dispatch_token", sa.String(32), nullable=True),
        sa.Column("lease_owner", sa.String(200), nullable=True),
        sa.Column("captions", sa.String(16), nullable=True),
        sa.Column("unfinished", sa.Integer),
        sa.Column("lease_until", tz, nullable=True, index=True),
        sa.Column("parent_id", sa.String(36), nullable=True, index=True),
        sa.Column("created_at", tz),
        sa.Column("updated_at", tz),
        sa.Column("indexed_at", tz, nullable=True),
        sa.UniqueConstraint("share", "path", name="uq_documents_share_path"),
    )  # fmt: skip
    sa.Table(
        "document_versions", meta,
        sa.Column("doc_id", sa.String(36), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("content_hash", sa.String(64)),
        sa.Column("size", sa.BigInteger),
        sa.Column("chunk_count", sa.Integer),
        sa.Column("created_at", tz),
    )  # fmt: skip
    sa.Table(
        "freshness_samples", meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("share", sa.String(200), index=True),
        sa.Column("change", sa.String(16)),
        sa.Column("seconds", sa.Float),
        sa.Column("at", tz),
    )  # fmt: skip
    sa.Table(
        "staged_documents", meta,
        sa.Column("doc_id", sa.String(36), primary_key=True),
        sa.Column("token", sa.String(32)),
        sa.Column("data", sa.LargeBinary),
        sa.Column("created_at", tz),
    )  # fmt: skip
    return meta


def upgrade() -> None:
    baseline().create_all(op.get_bind())


def downgrade() -> None:
    baseline().drop_all(op.get_bind())
