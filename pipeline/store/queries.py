"""Read-side queries: which extractions a rerun or an export selects, and recent-run metrics.

Each function takes a Session (the caller owns it) and returns rows or small frozen types.
Times are compared in UTC: a naive datetime is taken as the machine's local time.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Select, distinct, func, or_, select
from sqlalchemy.orm import Session, selectinload

from pipeline.errors import ConfigError
from pipeline.pathtext import from_text
from pipeline.settings import MODEL_ALIASES
from pipeline.store.models import Document, DocumentPath, Extraction, ExtractionEvent, Run
from pipeline.types import ErrorCategory, Status

_HEX = re.compile(r"[0-9a-f]{6,64}")
_RELATIVE = re.compile(r"(\d+)\s*([dhm])")


@dataclass(frozen=True)
class Selection:
    """Filters on current extractions; every filter given must match (an empty one matches all).

    `documents`: sha256 prefixes (6+ hex digits) or file names; `model`: a model id or its
    prefix (`tiny-random` matches `tiny-random-v1`); `since`/`until`: when the current result
    was recorded (its `updated_at`), inclusive/exclusive.
    """

    statuses: tuple[str, ...] = ()
    error_categories: tuple[str, ...] = ()
    documents: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    schema: str | None = None
    model: str | None = None

    def __post_init__(self) -> None:
        known = {s.value for s in Status}
        unknown = [s for s in self.statuses if s not in known]
        if unknown:
            raise ConfigError(f"unknown status {unknown[0]!r}; known: {', '.join(sorted(known))}")
        categories = {c.value for c in ErrorCategory}
        unknown = [c for c in self.error_categories if c not in categories]
        if unknown:
            raise ConfigError(
                f"unknown error category {unknown[0]!r}; known: {', '.join(sorted(categories))}"
            )

    def describe(self) -> dict[str, Any]:
        """The filters as plain JSON values (for run parameters and listings)."""
        return {
            "statuses": list(self.statuses),
            "error_categories": list(self.error_categories),
            "documents": list(self.documents),
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "schema": self.schema,
            "model": self.model,
        }


def parse_when(text: str, *, now: datetime | None = None) -> datetime:
    """A point in time from `2026-11-27`, `2026-11-27T02:00`, an ISO time with offset, or a
    relative `36h` / `7d` / `90m` (that long before `now`). Raises ConfigError otherwise."""
    value = text.strip()
    relative = _RELATIVE.fullmatch(value)
    if relative:
        amount, unit = int(relative.group(1)), relative.group(2)
        span = {"d": timedelta(days=amount), "h": timedelta(hours=amount)}.get(
            unit, timedelta(minutes=amount)
        )
        return (now or datetime.now(UTC)) - span
    try:
        return to_utc(datetime.fromisoformat(value))
    except ValueError:
        raise ConfigError(
            f"cannot read the date {text!r}; use 2026-11-27, 2026-11-27T02:00, or 36h / 7d ago"
        ) from None


def to_utc(moment: datetime) -> datetime:
    """`moment` as an aware UTC datetime (naive means local time)."""
    return moment.astimezone(UTC)


def select_extractions(session: Session, selection: Selection) -> list[Extraction]:
    """The current extractions matching `selection`, oldest document first, with their document
    and its paths loaded."""
    statement = _filtered(select(Extraction), selection).options(
        selectinload(Extraction.document).selectinload(Document.paths)
    )
    return list(session.scalars(statement.order_by(Extraction.document_id, Extraction.id)))


def _filtered(statement: Select[Any], selection: Selection) -> Select[Any]:
    if selection.statuses:
        statement = statement.where(Extraction.status.in_(selection.statuses))
    if selection.error_categories:
        statement = statement.where(Extraction.error_category.in_(selection.error_categories))
    if selection.schema:
        statement = statement.where(Extraction.schema_name == selection.schema)
    if selection.model:
        statement = statement.where(
            Extraction.model_id.startswith(_model_prefix(selection.model), autoescape=True)
        )
    if selection.since:
        statement = statement.where(Extraction.updated_at >= to_utc(selection.since))
    if selection.until:
        statement = statement.where(Extraction.updated_at < to_utc(selection.until))
    if selection.documents:
        statement = statement.where(Extraction.document_id.in_(_document_ids(selection.documents)))
    return statement


def _model_prefix(model: str) -> str:
    return MODEL_ALIASES.get(model, model)


def _document_ids(references: Sequence[str]) -> Select[Any]:
    conditions = []
    for reference in references:
        if _HEX.fullmatch(reference.lower()):
            conditions.append(Document.sha256.startswith(reference.lower()))
        conditions.append(
            Document.id.in_(select(DocumentPath.document_id).where(DocumentPath.name == reference))
        )
    return select(Document.id).where(or_(*conditions))


def last_seen_paths(document: Document) -> list[str]:
    """The paths `document` was seen under, most recently seen first, as file-system paths
    (stored names that were not UTF-8 are unescaped: see `pipeline.pathtext`)."""
    ordered = sorted(document.paths, key=lambda p: (p.last_seen_at, p.id), reverse=True)
    return [from_text(p.path) for p in ordered]


@dataclass(frozen=True)
class RunMetrics:
    """What one run did and what it cost. Rates are None when the run did no page or has not
    finished (still running, or its process died)."""

    run_id: int
    kind: str
    started_by: str
    deployment: str | None
    started_at: datetime
    finished_at: datetime | None
    extractions: int
    pages: int
    image_tokens: int
    input_tokens: int
    output_tokens: int
    cpu_seconds: float | None
    gpu_seconds: float | None
    wall_seconds: float | None = field(default=None)

    @property
    def pages_per_hour(self) -> float | None:
        if not self.pages or not self.wall_seconds:
            return None
        return self.pages * 3600.0 / self.wall_seconds

    @property
    def tokens_per_page(self) -> float | None:
        """Input (prompt + image) and output tokens per page."""
        if not self.pages:
            return None
        return (self.input_tokens + self.output_tokens) / self.pages

    @property
    def image_tokens_per_page(self) -> float | None:
        return self.image_tokens / self.pages if self.pages else None

    def to_json(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        data.update(
            pages_per_hour=_round(self.pages_per_hour),
            tokens_per_page=_round(self.tokens_per_page),
            image_tokens_per_page=_round(self.image_tokens_per_page),
        )
        return data


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def recent_run_metrics(session: Session, limit: int = 5) -> list[RunMetrics]:
    """Pages per hour and tokens per page of the `limit` latest runs, newest first.

    Counted from the history: every final outcome a run wrote (an extraction redone by a later
    run still counts for this one). Pages per hour use the run's wall-clock time.
    """
    runs = list(session.scalars(select(Run).order_by(Run.id.desc()).limit(limit)))
    if not runs:
        return []
    final = ExtractionEvent.status.in_([s.value for s in Status if s.is_final])
    rows = session.execute(
        select(
            ExtractionEvent.run_id,
            func.count(distinct(ExtractionEvent.extraction_id)),
            *(
                func.coalesce(func.sum(getattr(ExtractionEvent, name)), 0)
                for name in ("pages_total", "image_tokens", "input_tokens", "output_tokens")
            ),
            func.sum(ExtractionEvent.cpu_seconds),
            func.sum(ExtractionEvent.gpu_seconds),
        )
        .where(ExtractionEvent.run_id.in_([r.id for r in runs]), final)
        .group_by(ExtractionEvent.run_id)
    )
    totals = {row[0]: row[1:] for row in rows}
    return [_metrics(run, totals.get(run.id, (0, 0, 0, 0, 0, None, None))) for run in runs]


def _metrics(run: Run, totals: Sequence[Any]) -> RunMetrics:
    extractions, pages, image, prompt, output, cpu, gpu = totals
    wall = None
    if run.finished_at is not None:
        wall = (to_utc_assumed(run.finished_at) - to_utc_assumed(run.started_at)).total_seconds()
    return RunMetrics(
        run.id,
        run.kind,
        run.started_by,
        run.deployment,
        run.started_at,
        run.finished_at,
        int(extractions),
        int(pages),
        int(image),
        int(prompt),
        int(output),
        None if cpu is None else float(cpu),
        None if gpu is None else float(gpu),
        wall,
    )


def to_utc_assumed(moment: datetime) -> datetime:
    """A stored timestamp as aware UTC: SQLite hands them back naive, and they were UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def stored_provenances(
    session: Session, document_id: int, model_id: str, prompt_version: str
) -> list[dict[str, Any]]:
    """The provenance of every extraction of this document by this model and prompt version."""
    rows = session.scalars(
        select(Extraction.provenance).where(
            Extraction.document_id == document_id,
            Extraction.model_id == model_id,
            Extraction.prompt_version == prompt_version,
        )
    ).all()
    return [row or {} for row in rows]


def document_by_sha256(session: Session, sha256: str) -> Document | None:
    return session.scalars(select(Document).where(Document.sha256 == sha256)).one_or_none()


def run_counts(session: Session, flow_run_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """`Run.counts` by Prefect flow run id, for the runs that finished recording."""
    rows = session.scalars(select(Run).where(Run.flow_run_id.in_(list(flow_run_ids)))).all()
    return {r.flow_run_id: r.counts for r in rows if r.flow_run_id}
