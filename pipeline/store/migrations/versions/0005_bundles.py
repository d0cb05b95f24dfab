"""bundles: a file split into child documents, each a page range of it

`documents.split`: the file's split (parts, separator sheets, each boundary's decision and
confidence, who made it, and the splits it replaced); `documents.parent_id`, `first_page`,
`last_page`: a child document's file and page range.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("documents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("split", JSON, nullable=True))
        batch_op.add_column(sa.Column("parent_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("first_page", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("last_page", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_documents_parent_id"), ["parent_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_documents_parent_id_documents"),
            "documents",
            ["parent_id"],
            ["id"],
            ondelete="CASCADE",
        )


def downgrade() -> None:
    with op.batch_alter_table("documents", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_documents_parent_id_documents"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_documents_parent_id"))
        batch_op.drop_column("last_page")
        batch_op.drop_column("first_page")
        batch_op.drop_column("parent_id")
        batch_op.drop_column("split")
