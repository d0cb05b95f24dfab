"""The review desk's SQL: the queue (filters, counts, risk order, pages), one document's rows,
and the decisions people make (approve, correct, reject) with the optimistic version check.

Each function takes a Session; the caller owns the transaction. Nothing here validates records:
that is the schema's job, done by `pipeline.review` before a decision reaches the store.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.orm import Session, selectinload

from pipeline.errors import ConfigError
from pipeline.store.models import (
    Document,
    DocumentPath,
    Extraction,
    ExtractionEvent,
    Review,
    utcnow,
)
from pipeline.types import Status

# What waits for a person: doubtful records, and failures that still have pages to look at.
QUEUE_STATUSES = (Status.NEEDS_REVIEW.value, Status.PARTIAL.value, Status.FAILED.value)
REVIEWED_STATUSES = tuple(s.value for s in Status if s.is_reviewed)
SORTS = ("newest", "risk")
REASON_SAMPLE = 500
_VOLATILE = re.compile(r"'[^']*'|\"[^\"]*\"|[-+]?\d[\d.,]*")


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


def reason_key(reason: str) -> str:
    """A review reason with its values blanked (numbers -> #, quoted text -> '…'), so that the
    same rule on two documents counts as one reason."""
    return _VOLATILE.sub(lambda m: "'…'" if m.group(0)[0] in "'\"" else "#", reason)


def reason_pattern(text: str) -> str:
    """The LIKE pattern (escape character backslash, lower case) of a reason filter: a reason
    key (`reason_key`: `#` and `'…'` stand for any value) or else any text inside a reason."""
    parts = re.split(r"#|'…'", text.lower())
    escaped = [p.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") for p in parts]
    return "%" + "%".join(escaped) + "%"


@dataclass(frozen=True)
class QueueFilter:
    """The queue's filters (None: any); `status` None means every status that waits for a
    person. `page` is 1-based."""

    run: int | None = None
    schema: str | None = None
    status: str | None = None
    reason: str | None = None
    error_category: str | None = None
    sort: str = "newest"
    page: int = 1
    per_page: int = 50

    def __post_init__(self) -> None:
        if self.sort not in SORTS:
            raise ConfigError(f"unknown sort {self.sort!r}; choose one of {', '.join(SORTS)}")
        if self.status is not None and self.status not in {s.value for s in Status}:
            raise ConfigError(f"unknown status {self.status!r}")
        if self.page < 1 or not 1 <= self.per_page <= 500:
            raise ConfigError("page must be >= 1 and per_page 1..500")


@dataclass(frozen=True)
class QueueRow:
    extraction_id: int
    document_id: int
    name: str | None
    sha256: str
    schema_name: str
    model_id: str
    status: str
    error_category: str | None
    reasons: list[str]
    min_confidence: float | None
    pages_total: int
    run_id: int | None
    updated_at: datetime


@dataclass(frozen=True)
class QueuePage:
    rows: list[QueueRow]
    total: int
    filter: QueueFilter
    facets: dict[str, list[tuple[Any, int]]] = field(default_factory=dict)

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.filter.per_page))


def _waiting() -> ColumnElement[bool]:
    return or_(
        Extraction.status.in_(QUEUE_STATUSES[:2]),
        and_(Extraction.status == Status.FAILED.value, Extraction.pages_total > 0),
    )


def _where(statement: Any, f: QueueFilter, *, skip: str = "") -> Any:
    """`statement` under the filters of `f` but `skip` ('all': every one but the reason)."""
    left_out = {"status", "run", "schema", "error_category"} if skip == "all" else {skip}
    if "status" not in left_out:
        statement = statement.where(_waiting() if f.status is None else _status_is(f.status))
    if f.run is not None and "run" not in left_out:
        statement = statement.where(Extraction.run_id == f.run)
    if f.schema and "schema" not in left_out:
        statement = statement.where(Extraction.schema_name == f.schema)
    if f.error_category and "error_category" not in left_out:
        statement = statement.where(Extraction.error_category == f.error_category)
    if f.reason and "reason" not in left_out:
        # Over the JSON text of the list (a quote inside a reason is escaped there, and a key
        # blanks quoted values, so neither needs care).
        text = func.lower(func.cast(Extraction.review_reasons, _text_type()))
        statement = statement.where(text.like(reason_pattern(f.reason), escape="\\"))
    return statement


def _status_is(status: str) -> ColumnElement[bool]:
    if status == Status.FAILED.value:  # a failure without pages has nothing to review
        return and_(Extraction.status == status, Extraction.pages_total > 0)
    return Extraction.status == status


def _text_type() -> Any:
    from sqlalchemy import Text

    return Text()


def _names(session: Session, document_ids: list[int]) -> dict[int, str]:
    """The most recently seen file name of each document."""
    statement = (
        select(DocumentPath.document_id, DocumentPath.name)
        .where(DocumentPath.document_id.in_(document_ids))
        .order_by(DocumentPath.last_seen_at, DocumentPath.id)
    )
    return {document_id: name for document_id, name in session.execute(statement)}


def queue_page(session: Session, f: QueueFilter, *, facets: bool = True) -> QueuePage:
    """One page of the queue under `f`, its total, and (with `facets`) counts per run, schema,
    status, error category and common reason, each under the other filters."""
    columns = (
        Extraction.id,
        Extraction.document_id,
        Document.sha256,
        Extraction.schema_name,
        Extraction.model_id,
        Extraction.status,
        Extraction.error_category,
        Extraction.review_reasons,
        Extraction.min_confidence,
        Extraction.pages_total,
        Extraction.run_id,
        Extraction.updated_at,
    )
    if f.sort == "risk":
        order: tuple[Any, ...] = (
            Extraction.min_confidence.asc().nulls_last(),
            Extraction.reason_count.desc(),
            Extraction.id.desc(),
        )
    else:
        order = (Extraction.updated_at.desc(), Extraction.id.desc())
    offset = (f.page - 1) * f.per_page
    # The page's ids first (no join: SQLite sorts far less), then their rows.
    page = _where(select(Extraction.id), f).order_by(*order).limit(f.per_page).offset(offset)
    ids = list(session.scalars(page))
    full = select(*columns).join(Document).where(Extraction.id.in_(ids))
    by_id = {row[0]: row for row in session.execute(full)}
    found = [by_id[i] for i in ids if i in by_id]
    names = _names(session, [row[1] for row in found])  # after the sort: only this page's
    rows = [QueueRow(row[0], row[1], names.get(row[1]), *row[2:]) for row in found]
    total = session.scalar(_where(select(func.count()).select_from(Extraction), f)) or 0
    return QueuePage(rows, total, f, _facets(session, f) if facets else {})


def _facets(session: Session, f: QueueFilter) -> dict[str, list[tuple[Any, int]]]:
    """Counts per value of each filter under the other filters, from one grouped scan."""
    keys = (
        Extraction.status,
        Extraction.pages_total > 0,
        Extraction.run_id,
        Extraction.schema_name,
        Extraction.error_category,
    )
    everywhere = or_(_waiting(), Extraction.status.in_(REVIEWED_STATUSES))
    scan = _where(select(*keys, func.count()).select_from(Extraction), f, skip="all")
    groups = list(session.execute(scan.where(everywhere).group_by(*keys)))
    wanted = {"run": f.run, "schema": f.schema, "error_category": f.error_category}
    counters: dict[str, Counter[Any]] = {name: Counter() for name in ("status", *wanted)}
    for status, has_pages, run, schema, category, n in groups:
        if status == Status.FAILED.value and not has_pages:
            continue
        values = {"status": status, "run": run, "schema": schema, "error_category": category}
        selected = status == f.status if f.status else status in QUEUE_STATUSES
        for name, counter in counters.items():
            others = all(v is None or values[o] == v for o, v in wanted.items() if o != name)
            if others and values[name] is not None and (name == "status" or selected):
                counter[values[name]] += n
    out: dict[str, list[tuple[Any, int]]] = {
        name: counter.most_common(20) for name, counter in counters.items()
    }
    out["status"] = sorted(out["status"])
    # Reasons are JSON lists: counted in Python over the newest REASON_SAMPLE waiting rows, so
    # that the queue stays fast with 100,000 of them (the desk says it is a sample).
    reasons: Counter[str] = Counter()
    newest = _where(select(Extraction.review_reasons), f, skip="reason")
    newest = newest.order_by(Extraction.updated_at.desc()).limit(REASON_SAMPLE)
    for (listed,) in session.execute(newest):
        reasons.update({reason_key(str(r)) for r in listed or []})
    out["reason"] = reasons.most_common(12)
    return out


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


def with_page(f: QueueFilter, page: int) -> QueueFilter:
    return replace(f, page=page)


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
)
