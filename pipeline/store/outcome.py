"""The typed outcome of one extraction attempt, and how the store keeps it.

The status itself is decided once, in `pipeline.finalize`; the store only adds retention rules:
a failed attempt never erases an earlier record, and a reviewer's decision stands unless forced
(the attempt goes into the history either way).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from pipeline.store.claims import owned as _owned
from pipeline.store.models import Extraction, ExtractionEvent, utcnow
from pipeline.store.reviews import risk_columns
from pipeline.types import Status


@dataclass(frozen=True)
class ExtractionOutcome:
    """What one attempt stores: the columns of an `Extraction` row (and its history event).

    `status` is a final status; `errors` and `raw_outputs` are JSON-ready lists;
    `field_confidence` maps field paths to their confidence and evidence.
    """

    status: str
    record: dict[str, Any] | None = None
    error_category: str | None = None
    error_message: str | None = None
    review_reasons: list[str] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    raw_outputs: list[dict[str, Any]] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)
    field_confidence: dict[str, Any] | None = None
    pages_total: int = 0
    pages_failed: int = 0
    image_tokens: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    model_calls: int = 0
    seconds: float = 0.0
    cpu_seconds: float | None = None
    gpu_seconds: float | None = None

    def __post_init__(self) -> None:
        if not Status(self.status).is_final:
            raise ValueError(f"an outcome's status must be final, not {self.status!r}")

    def columns(self) -> dict[str, Any]:
        return asdict(self)


# What a final history event copies from the outcome: the whole attempt, so that nothing about
# it is lost when a later attempt replaces the current result.
SNAPSHOT_FIELDS: tuple[str, ...] = (
    "error_category",
    "error_message",
    "record",
    "errors",
    "raw_outputs",
    "provenance",
    "timings",
    "field_confidence",
    "pages_total",
    "pages_failed",
    "image_tokens",
    "input_tokens",
    "output_tokens",
    "model_calls",
    "seconds",
    "cpu_seconds",
    "gpu_seconds",
)
FINAL_STATUSES = tuple(s.value for s in Status if s.is_final)


def save_outcome(
    session: Session,
    extraction_id: int,
    worker: str,
    outcome: ExtractionOutcome,
    *,
    force: bool = False,
) -> bool:
    """Write a final outcome if we still own the claim, and append it to the history.

    Returns False (writing nothing) when the claim was lost to another worker after our lease
    expired.

    A failed attempt never erases an earlier record: when the unit already holds one (this was
    a rerun of a succeeded, needs_review or partial result), the failure goes into the history
    and the row keeps its earlier outcome, with a second event that says so. Likewise a person's
    decision (approved, corrected, rejected) stands against any attempt unless `force` (`rerun
    --force`): the attempt is kept in the history, for comparison in the review desk.
    """
    fields = outcome.columns()
    owned = _owned(extraction_id, worker)
    now = utcnow()
    # Write first: the compare-and-set takes the row (PostgreSQL) or database (SQLite) lock
    # before anything is read, so a SQLite reader never has to upgrade a stale snapshot.
    touched = session.execute(
        update(Extraction)
        .where(*owned)
        .values(updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if touched.rowcount != 1:  # type: ignore[attr-defined]
        return False
    earlier = session.scalar(select(Extraction.record).where(Extraction.id == extraction_id))
    kept = _status_to_keep(
        session, extraction_id, fields, has_record=earlier is not None, force=force
    )
    values = {**fields, **risk_columns(fields)} if kept is None else {"status": kept}
    session.execute(
        update(Extraction)
        .where(Extraction.id == extraction_id)
        .values(**values, claimed_by=None, claimed_at=None, version=Extraction.version + 1)
        .execution_options(synchronize_session=False)
    )
    extraction = session.get(Extraction, extraction_id)
    assert extraction is not None
    session.refresh(extraction)
    snapshot = {name: fields.get(name) for name in SNAPSHOT_FIELDS}
    snapshot["review_reasons"] = fields.get("review_reasons") or []
    common = {"extraction_id": extraction_id, "run_id": extraction.run_id, "worker": worker}
    attempt = extraction.attempts
    session.add(
        ExtractionEvent(**common, at=now, status=fields["status"], attempt=attempt, **snapshot)
    )
    if kept is not None:
        session.add(
            ExtractionEvent(
                **common,
                at=now,
                status=kept,
                attempt=attempt,
                error_message=_kept_message(attempt, fields["status"], kept),
            )
        )
    return True


def _kept_message(attempt: int, status: str, kept: str) -> str:
    if Status(kept).is_reviewed:
        return (
            f"attempt {attempt} ({status}) kept in the history; the {kept} record of a "
            "reviewer stands (`docextract rerun --force` replaces it)"
        )
    return f"attempt {attempt} failed; the earlier {kept} record was kept"


def _status_to_keep(
    session: Session,
    extraction_id: int,
    fields: dict[str, Any],
    *,
    has_record: bool,
    force: bool = False,
) -> str | None:
    """The earlier final status to keep instead of writing `fields`, or None to write them:
    a reviewer's decision (unless `force`), or a record that a failed attempt must not erase."""
    if not force:
        latest = session.scalar(
            select(ExtractionEvent.status)
            .where(
                ExtractionEvent.extraction_id == extraction_id,
                ExtractionEvent.status.in_(FINAL_STATUSES),
            )
            .order_by(ExtractionEvent.id.desc())
            .limit(1)
        )
        if latest is not None and Status(latest).is_reviewed:
            return latest
    if fields.get("status") != Status.FAILED.value or not has_record:
        return None
    return session.scalar(
        select(ExtractionEvent.status)
        .where(
            ExtractionEvent.extraction_id == extraction_id,
            ExtractionEvent.status.in_(FINAL_STATUSES),
            ExtractionEvent.status != Status.FAILED.value,
        )
        .order_by(ExtractionEvent.id.desc())
        .limit(1)
    )
