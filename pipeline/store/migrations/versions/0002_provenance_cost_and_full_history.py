"""provenance, cost and full history

Per-field confidence and CPU/GPU seconds on extractions; every final history event becomes a full
snapshot of its attempt (errors, raw outputs, provenance, timings, tokens), so a rerun that
replaces the current result loses nothing and per-run metrics can be computed from the history;
runs record the Prefect deployment that started them. Indexes for rerun selection and metrics.

Every new column is nullable: rows written before this revision keep None ("not measured").

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 04:35:46.067470
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

EVENT_JSON_COLUMNS = ("errors", "raw_outputs", "provenance", "timings", "field_confidence")
EVENT_INT_COLUMNS = (
    "pages_total",
    "pages_failed",
    "image_tokens",
    "input_tokens",
    "output_tokens",
    "model_calls",
)
EVENT_FLOAT_COLUMNS = ("seconds", "cpu_seconds", "gpu_seconds")


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("extraction_events", schema=None) as batch_op:
        for name in EVENT_JSON_COLUMNS:
            batch_op.add_column(sa.Column(name, _json(), nullable=True))
        for name in EVENT_INT_COLUMNS:
            batch_op.add_column(sa.Column(name, sa.Integer(), nullable=True))
        for name in EVENT_FLOAT_COLUMNS:
            batch_op.add_column(sa.Column(name, sa.Double(), nullable=True))
        batch_op.create_index(batch_op.f("ix_extraction_events_run_id"), ["run_id"], unique=False)

    with op.batch_alter_table("extractions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("field_confidence", _json(), nullable=True))
        batch_op.add_column(sa.Column("cpu_seconds", sa.Double(), nullable=True))
        batch_op.add_column(sa.Column("gpu_seconds", sa.Double(), nullable=True))
        batch_op.create_index("ix_extractions_run_id", ["run_id"], unique=False)
        batch_op.create_index("ix_extractions_updated_at", ["updated_at"], unique=False)

    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("deployment", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("deployment")

    with op.batch_alter_table("extractions", schema=None) as batch_op:
        batch_op.drop_index("ix_extractions_updated_at")
        batch_op.drop_index("ix_extractions_run_id")
        batch_op.drop_column("gpu_seconds")
        batch_op.drop_column("cpu_seconds")
        batch_op.drop_column("field_confidence")

    with op.batch_alter_table("extraction_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_extraction_events_run_id"))
        for name in reversed(EVENT_FLOAT_COLUMNS + EVENT_INT_COLUMNS + EVENT_JSON_COLUMNS):
            batch_op.drop_column(name)
