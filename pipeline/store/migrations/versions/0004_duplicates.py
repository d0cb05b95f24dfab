"""duplicates: indexed invoice keys and the pairs found

`duplicate_keys`: one row per stored invoice extraction and seller identity (VAT id, IBAN,
normalized name) with its normalized number, total and issue date, indexed by (seller, number)
and (seller, date), so the duplicate check reads a few rows, never every record.
`duplicate_pairs`: the possible duplicates found, and a person's "distinct" decision.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 02:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "duplicate_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("extraction_id", sa.Integer(), nullable=False),
        sa.Column("document_id", sa.Integer(), nullable=False),
        sa.Column("seller_key", sa.String(length=160), nullable=False),
        sa.Column("number_key", sa.String(length=64), nullable=True),
        sa.Column("total", sa.Numeric(precision=18, scale=2), nullable=True),
        sa.Column("issue_date", sa.Date(), nullable=True),
        sa.Column("label", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["documents.id"],
            name=op.f("fk_duplicate_keys_document_id_documents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["extraction_id"],
            ["extractions.id"],
            name=op.f("fk_duplicate_keys_extraction_id_extractions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_duplicate_keys")),
        sa.UniqueConstraint(
            "extraction_id", "seller_key", name="uq_duplicate_keys_extraction_seller"
        ),
    )
    with op.batch_alter_table("duplicate_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_duplicate_keys_document_id"), ["document_id"])
        batch_op.create_index("ix_duplicate_keys_seller_number", ["seller_key", "number_key"])
        batch_op.create_index("ix_duplicate_keys_seller_date", ["seller_key", "issue_date"])

    op.create_table(
        "duplicate_pairs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("document_id", sa.Integer(), nullable=False),
        sa.Column("original_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("found_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("distinct_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("distinct_by", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["documents.id"],
            name=op.f("fk_duplicate_pairs_document_id_documents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["original_id"],
            ["documents.id"],
            name=op.f("fk_duplicate_pairs_original_id_documents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_duplicate_pairs")),
        sa.UniqueConstraint("document_id", "original_id", name="uq_duplicate_pairs"),
    )
    with op.batch_alter_table("duplicate_pairs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_duplicate_pairs_original_id"), ["original_id"])
        batch_op.create_index(batch_op.f("ix_duplicate_pairs_found_at"), ["found_at"])


def downgrade() -> None:
    with op.batch_alter_table("duplicate_pairs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_duplicate_pairs_found_at"))
        batch_op.drop_index(batch_op.f("ix_duplicate_pairs_original_id"))
    op.drop_table("duplicate_pairs")
    with op.batch_alter_table("duplicate_keys", schema=None) as batch_op:
        batch_op.drop_index("ix_duplicate_keys_seller_date")
        batch_op.drop_index("ix_duplicate_keys_seller_number")
        batch_op.drop_index(batch_op.f("ix_duplicate_keys_document_id"))
    op.drop_table("duplicate_keys")
