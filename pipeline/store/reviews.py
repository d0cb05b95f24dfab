"""The review desk's SQL: one document's rows and the decisions people make (approve, correct,
reject) with the optimistic version check; the queue lives in `queue` and is re-exported here.

Each function takes a Session; the caller owns the transaction. Nothing here validates records:
that is the schema's job, done by `pipeline.review` before a decision reaches the store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, selectinload

from pipeline.errors import ConfigError
from pipeline.store.models import (
    Document,
    Extraction,
    ExtractionEvent,
    Review,
    utcnow,
)
from pipeline.store.queue import (
    QUEUE_STATUSES,
    REVIEWED_STATUSES,
    QueueFilter,
    QueuePage,
    QueueRow,
    queue_page,
    reason_key,
    reason_pattern,
    with_page,
)
from pipeline.types import Status


class StaleVersion(Exception):
    """The extraction changed since the reviewer loaded it (another reviewer, or a rerun)."""

    def __init__(self, extraction_id: int, expected: int, current: int, status: str) -> None:
        self.extraction_id, self.expected, self.current, self.status = (
            extraction_id,
            expected,
            current,
            status,
        )
        super().__init__(
            f"extraction {extraction_id} changed since you opened it (version {expected}, now "
            f"{current}, status {status!r}): reload the page to see the change, then decide again"
        )


def min_confidence(field_confidence: Mapping[str, Any] | None) -> float | None:
    """The lowest per-field confidence: values are evidence dicts (`{"confidence": 0.9, ...}`)
    or, in rows written before grounding, bare numbers. None when none is measured."""
    values = [
        v.get("confidence") if isinstance(v, Mapping) else v
        for v in (field_confidence or {}).values()
    ]
    numbers = [float(v) for v in values if isinstance(v, int | float)]
    return min(numbers) if numbers else None


def risk_columns(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The queue's risk columns for an outcome's Extraction `fields`."""
    return {
        "min_confidence": min_confidence(fields.get("field_confidence")),
        "reason_count": len(fields.get("review_reasons") or []),
    }


def load_extraction(session: Session, extraction_id: int) -> Extraction | None:
    """The extraction with its document, paths and pages loaded (None: no such id)."""
    return session.scalars(
        select(Extraction)
        .where(Extraction.id == extraction_id)
        .options(
            selectinload(Extraction.document).selectinload(Document.paths),
            selectinload(Extraction.document).selectinload(Document.pages),
        )
    ).one_or_none()


def attempts(session: Session, extraction_id: int) -> list[ExtractionEvent]:
    """Every recorded outcome of the extraction (final history events), newest first: model
    attempts (a rerun kept beside a reviewed record among them) and review decisions."""
    final = [s.value for s in Status if s.is_final]
    return list(
        session.scalars(
            select(ExtractionEvent)
            .where(
                ExtractionEvent.extraction_id == extraction_id, ExtractionEvent.status.in_(final)
            )
            .order_by(ExtractionEvent.id.desc())
        )
    )


def siblings(session: Session, extraction: Extraction) -> list[Extraction]:
    """Other extractions of the same document (another schema, model or prompt version)."""
    return list(
        session.scalars(
            select(Extraction)
            .where(Extraction.document_id == extraction.document_id, Extraction.id != extraction.id)
            .order_by(Extraction.id.desc())
        )
    )


def reviews_of(session: Session, extraction_id: int) -> list[Review]:
    return list(
        session.scalars(
            select(Review).where(Review.extraction_id == extraction_id).order_by(Review.id.desc())
        )
    )


@dataclass(frozen=True)
class Decision:
    """What a reviewer decided: `action` approved, corrected or rejected; `record` the record
    as it stands after the review (the original one for approved/rejected)."""

    action: str
    reviewer: str
    record: dict[str, Any] | None
    diff: list[dict[str, Any]]
    remaining_reasons: list[str]
    reason: str | None = None

    def __post_init__(self) -> None:
        if self.action not in REVIEWED_STATUSES:
            raise ConfigError(f"unknown review action {self.action!r}")
        if not self.reviewer.strip():
            raise ConfigError("a decision needs the reviewer's name")


def decide(
    session: Session, extraction_id: int, expected_version: int, decision: Decision
) -> Review:
    """Store `decision` on the extraction if it is still at `expected_version`: the row takes the
    new status and record, a `reviews` row and a history event are appended.

    Raises StaleVersion (writing nothing) when the row changed since the reviewer loaded it, and
    ConfigError for an unknown extraction or a decision on a record being extracted right now.
    """
    now = utcnow()
    changed = session.execute(
        update(Extraction)
        .where(
            Extraction.id == extraction_id,
            Extraction.version == expected_version,
            Extraction.status != Status.RUNNING.value,
        )
        .values(version=Extraction.version + 1, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    extraction = session.get(Extraction, extraction_id)
    if extraction is None:
        raise ConfigError(f"no extraction with id {extraction_id}")
    session.refresh(extraction)
    if changed.rowcount != 1:  # type: ignore[attr-defined]
        raise StaleVersion(extraction_id, expected_version, extraction.version, extraction.status)
    original = extraction.record
    review = Review(
        extraction_id=extraction_id,
        at=now,
        reviewer=decision.reviewer.strip()[:255],
        action=decision.action,
        reason=decision.reason,
        original_record=original,
        corrected_record=decision.record,
        diff=decision.diff,
        remaining_reasons=decision.remaining_reasons,
        schema_name=extraction.schema_name,
        schema_version=extraction.schema_version,
        model_id=extraction.model_id,
        prompt_version=extraction.prompt_version,
        previous_status=extraction.status,
        version=extraction.version,
    )
    session.add(review)
    extraction.status = decision.action
    extraction.record = decision.record
    extraction.review_reasons = list(decision.remaining_reasons)
    extraction.reason_count = len(decision.remaining_reasons)
    session.add(
        ExtractionEvent(
            extraction_id=extraction_id,
            at=now,
            status=decision.action,
            attempt=extraction.attempts,
            worker=f"review:{review.reviewer}",
            record=decision.record,
            review_reasons=list(decision.remaining_reasons),
            error_message=decision.reason,
        )
    )
    session.flush()
    return review


@dataclass(frozen=True)
class Reviewed:
    """A reviewed extraction: what the model wrote first and what people made of it."""

    extraction: Extraction
    original: dict[str, Any] | None
    final: dict[str, Any] | None
    action: str


def reviewed(session: Session, *, schema: str | None = None) -> list[Reviewed]:
    """Every extraction now approved or corrected, with the model's original record (from its
    first review) and the reviewed one, oldest first; rejected ones have no truth to give."""
    statement = (
        select(Extraction)
        .where(Extraction.status.in_([Status.APPROVED.value, Status.CORRECTED.value]))
        .options(selectinload(Extraction.document).selectinload(Document.paths))
        .order_by(Extraction.id)
    )
    if schema:
        statement = statement.where(Extraction.schema_name == schema)
    rows = list(session.scalars(statement))
    first: dict[int, Review] = {}
    for review in session.scalars(
        select(Review).where(Review.extraction_id.in_([r.id for r in rows])).order_by(Review.id)
    ):
        first.setdefault(review.extraction_id, review)
    return [
        Reviewed(r, first[r.id].original_record if r.id in first else r.record, r.record, r.status)
        for r in rows
    ]


__all__: Sequence[str] = (
    "QUEUE_STATUSES",
    "Decision",
    "QueueFilter",
    "QueuePage",
    "QueueRow",
    "Reviewed",
    "StaleVersion",
    "attempts",
    "decide",
    "load_extraction",
    "min_confidence",
    "queue_page",
    "reason_key",
    "reason_pattern",
    "reviewed",
    "reviews_of",
    "risk_columns",
    "siblings",
    "with_page",
)
