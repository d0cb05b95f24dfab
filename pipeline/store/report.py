"""The night's report's SQL: which extractions a report covers, and the runs around it.

Each function takes a Session; the caller owns it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, load_only, selectinload

from pipeline.store.models import Document, Extraction, Run
from pipeline.store.queries import to_utc


def covered(session: Session, *, run_id: int | None, since: datetime | None) -> list[Extraction]:
    """The current extractions a report covers: those whose latest run is `run_id`, or (with
    `since`) those recorded since then; with their document's paths loaded, raw outputs not."""
    statement = select(Extraction).options(
        load_only(
            Extraction.id,
            Extraction.document_id,
            Extraction.schema_name,
            Extraction.model_id,
            Extraction.status,
            Extraction.error_category,
            Extraction.error_message,
            Extraction.review_reasons,
            Extraction.seconds,
            Extraction.pages_total,
            Extraction.pages_failed,
            Extraction.input_tokens,
            Extraction.output_tokens,
            Extraction.run_id,
            Extraction.updated_at,
        ),
        selectinload(Extraction.document).selectinload(Document.paths),
    )
    if run_id is not None:
        statement = statement.where(Extraction.run_id == run_id)
    if since is not None:
        statement = statement.where(Extraction.updated_at >= to_utc(since))
    return list(session.scalars(statement.order_by(Extraction.id)))


def runs_since(session: Session, since: datetime) -> list[int]:
    """Ids of the runs started since `since`, newest first."""
    statement = select(Run.id).where(Run.started_at >= to_utc(since)).order_by(Run.id.desc())
    return list(session.scalars(statement))


def latest_run(session: Session) -> int | None:
    return session.scalar(select(Run.id).order_by(Run.id.desc()).limit(1))
