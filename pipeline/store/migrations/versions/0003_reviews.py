"""review desk: reviews, optimistic version, queue risk

A `reviews` table (one row per decision at the review desk); on extractions a `version` bumped by
every write (the desk's optimistic check), and the queue's risk order kept beside the JSON it
comes from (`min_confidence`, `reason_count`), backfilled here from the stored rows; an index for
the queue (status, updated_at).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 03:10:00.000000
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("extraction_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reviewer", sa.String(length=255), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("original_record", _json(), nullable=True),
        sa.Column("corrected_record", _json(), nullable=True),
        sa.Column("diff", _json(), nullable=False),
        sa.Column("remaining_reasons", _json(), nullable=False),
        sa.Column("schema_name", sa.String(length=128), nullable=False),
        sa.Column("schema_version", sa.String(length=32), nullable=False),
        sa.Column("model_id", sa.String(length=255), nullable=False),
        sa.Column("prompt_version", sa.String(length=32), nullable=False),
        sa.Column("previous_status", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["extraction_id"],
            ["extractions.id"],
            name=op.f("fk_reviews_extraction_id_extractions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reviews")),
    )
    with op.batch_alter_table("reviews", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reviews_extraction_id"), ["extraction_id"])
        batch_op.create_index(batch_op.f("ix_reviews_at"), ["at"])

    with op.batch_alter_table("extractions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("version", sa.Integer(), server_default="1", nullable=False))
        batch_op.add_column(sa.Column("min_confidence", sa.Double(), nullable=True))
        batch_op.add_column(
            sa.Column("reason_count", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.create_index("ix_extractions_status_updated_at", ["status", "updated_at"])
    _backfill_risk()


def _backfill_risk() -> None:
    """min_confidence and reason_count of the rows already stored (the same rule as
    `pipeline.store.reviews.risk_columns`, copied: a migration must not change with the code)."""
    connection = op.get_bind()
    table = sa.table(
        "extractions",
        sa.column("id", sa.Integer()),
        sa.column("field_confidence", _json()),
        sa.column("review_reasons", _json()),
        sa.column("min_confidence", sa.Double()),
        sa.column("reason_count", sa.Integer()),
    )
    rows = connection.execute(
        sa.select(table.c.id, table.c.field_confidence, table.c.review_reasons)
    )
    for row_id, confidence, reasons in list(rows):
        if isinstance(confidence, str):
            confidence = json.loads(confidence)
        if isinstance(reasons, str):
            reasons = json.loads(reasons)
        values = [
            v.get("confidence") if isinstance(v, dict) else v for v in (confidence or {}).values()
        ]
        numbers = [float(v) for v in values if isinstance(v, int | float)]
        connection.execute(
            sa.update(table)
            .where(table.c.id == row_id)
            .values(
                min_confidence=min(numbers) if numbers else None, reason_count=len(reasons or [])
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("extractions", schema=None) as batch_op:
        batch_op.drop_index("ix_extractions_status_updated_at")
        batch_op.drop_column("reason_count")
        batch_op.drop_column("min_confidence")
        batch_op.drop_column("version")

    with op.batch_alter_table("reviews", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reviews_at"))
        batch_op.drop_index(batch_op.f("ix_reviews_extraction_id"))
    op.drop_table("reviews")
