"""The review desk's queue: what waits for a person, filtered, counted, in risk or time order,
one page at a time. Each function takes a Session; the caller owns the transaction."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session

from pipeline.errors import ConfigError
from pipeline.store.models import Document, DocumentPath, Extraction
from pipeline.types import Status

# What waits for a person: doubtful records, and failures that still have pages to look at.
QUEUE_STATUSES = (Status.NEEDS_REVIEW.value, Status.PARTIAL.value, Status.FAILED.value)
REVIEWED_STATUSES = tuple(s.value for s in Status if s.is_reviewed)
SORTS = ("newest", "risk")
REASON_SAMPLE = 500
_VOLATILE = re.compile(r"'[^']*'|\"[^\"]*\"|[-+]?\d[\d.,]*")


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
    """The most recently seen file name of each document (a bundle's document: with its pages,
    `scan.pdf [pages 3-4]`)."""
    statement = (
        select(DocumentPath.document_id, DocumentPath.name)
        .where(DocumentPath.document_id.in_(document_ids))
        .order_by(DocumentPath.last_seen_at, DocumentPath.id)
    )
    names = {document_id: name for document_id, name in session.execute(statement)}
    parts = select(Document.id, Document.first_page, Document.last_page).where(
        Document.id.in_(document_ids), Document.parent_id.is_not(None)
    )
    for document_id, first, last in session.execute(parts):
        pages = f"{first}" if first == last else f"{first}-{last}"
        names[document_id] = f"{names.get(document_id, '')} [pages {pages}]"
    return names


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


def with_page(f: QueueFilter, page: int) -> QueueFilter:
    return replace(f, page=page)
