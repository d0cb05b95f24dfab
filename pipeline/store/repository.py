"""Store functions. Each takes a Session; the caller (flow task or CLI) owns the transaction.

Claims make concurrent workers safe on PostgreSQL and SQLite alike: a worker owns an extraction
only after a conditional UPDATE (compare-and-set on status and lease) changed exactly one row,
and only the owner can write the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from pipeline.pathtext import to_text
from pipeline.store.claims import (
    UnitOfWork,
    claim,
    current_extraction,
    insert_ignoring_conflicts,
    is_dead_local_worker,
    release,
    renew_claim,
    worker_name,
)
from pipeline.store.models import (
    Document,
    DocumentPath,
    Extraction,
    ExtractionEvent,
    Page,
    Run,
    utcnow,
)
from pipeline.store.outcome import ExtractionOutcome, save_outcome
from pipeline.types import PageImage, Status


def register_document(
    session: Session, path: Path, sha256: str, size_bytes: int, media_type: str | None
) -> Document:
    """The Document for these bytes (created on first sight), with `path` recorded."""
    now = utcnow()
    insert_ignoring_conflicts(
        session,
        Document,
        {
            "sha256": sha256,
            "size_bytes": size_bytes,
            "media_type": media_type,
            "first_seen_at": now,
            "last_seen_at": now,
        },
        ["sha256"],
    )
    document = session.scalars(select(Document).where(Document.sha256 == sha256)).one()
    document.last_seen_at = now
    if media_type and not document.media_type:
        document.media_type = media_type
    # As text any database takes: a name that is not UTF-8 is stored escaped (pathtext).
    resolved = to_text(str(path.resolve()))
    insert_ignoring_conflicts(
        session,
        DocumentPath,
        {
            "document_id": document.id,
            "path": resolved,
            "name": to_text(path.name)[:255],
            "first_seen_at": now,
            "last_seen_at": now,
        },
        ["document_id", "path"],
    )
    session.execute(
        update(DocumentPath)
        .where(DocumentPath.document_id == document.id, DocumentPath.path == resolved)
        .values(last_seen_at=now)
    )
    return document


def record_pages(
    session: Session, document: Document, page_count: int, pages: Sequence[PageImage]
) -> None:
    """Store the page count and each rendered page's size, DPI and render time."""
    document.page_count = page_count
    existing = {p.number: p for p in document.pages}
    for image in pages:
        row = existing.get(image.number)
        if row is None:
            row = Page(document=document, number=image.number)
            session.add(row)
        row.width, row.height, row.dpi = image.width, image.height, image.dpi
        row.rotation, row.render_seconds = image.rotation, image.render_seconds


def start_run(
    session: Session,
    kind: str,
    parameters: dict[str, Any],
    flow_run_id: str | None = None,
    deployment: str | None = None,
) -> Run:
    """Record the start of a run: `kind` (run, nightly, rerun), who started it (user@host:pid),
    its non-secret parameters, and where Prefect started it from (flow run, deployment)."""
    run = Run(
        kind=kind,
        started_by=worker_name(),
        parameters=parameters,
        flow_run_id=flow_run_id,
        deployment=deployment,
    )
    session.add(run)
    session.flush()
    return run


def finish_run(session: Session, run_id: int, counts: dict[str, Any]) -> None:
    run = session.get(Run, run_id)
    if run is not None:
        run.finished_at, run.counts = utcnow(), counts


def status_counts(session: Session) -> dict[str, int]:
    rows = session.execute(select(Extraction.status, func.count()).group_by(Extraction.status))
    return {status: count for status, count in rows}


def error_counts(session: Session) -> dict[str, int]:
    """Current failed extractions per error category (what to fix first)."""
    rows = session.execute(
        select(Extraction.error_category, func.count())
        .where(Extraction.status == Status.FAILED.value)
        .group_by(Extraction.error_category)
    )
    return {category or "unknown": count for category, count in rows}


def latest_extractions(session: Session, limit: int = 20) -> list[Extraction]:
    return list(
        session.scalars(
            select(Extraction)
            .order_by(Extraction.updated_at.desc(), Extraction.id.desc())
            .limit(limit)
        )
    )


def find_documents(session: Session, reference: str) -> list[Document]:
    """Documents whose sha256 starts with `reference` or whose file name equals it."""
    by_hash = select(Document).where(Document.sha256.startswith(reference.lower()))
    by_name = (
        select(Document)
        .join(DocumentPath)
        .where(or_(DocumentPath.name == reference, DocumentPath.path == reference))
    )
    found = {d.id: d for d in session.scalars(by_hash)} if len(reference) >= 6 else {}
    named = {d.id: d for d in session.scalars(by_name)}
    # a bundle's name names the file; its child documents (seen under the same name) are
    # reached through it, or by their own sha256 key
    found.update({i: d for i, d in named.items() if d.parent_id not in named})
    return sorted(found.values(), key=lambda d: d.id)


def seen_since(session: Session, since: datetime) -> list[Document]:
    return list(session.scalars(select(Document).where(Document.last_seen_at >= since)))


@dataclass(frozen=True)
class Forgotten:
    """What `forget_extractions` removed (or would remove): counts per (model, schema, status)."""

    groups: dict[tuple[str, str, str], int]

    @property
    def extractions(self) -> int:
        return sum(self.groups.values())


def forget_extractions(
    session: Session,
    model_id: str,
    *,
    schema: str | None = None,
    statuses: Sequence[str] = (),
    dry_run: bool = False,
) -> Forgotten:
    """Delete the extractions made by exactly `model_id` (optionally only `schema` and
    `statuses`), with their history: what a mistaken run left. Documents, pages and runs stay.
    With `dry_run`, count only. Running claims are never touched (a live worker owns them)."""
    conditions = [Extraction.model_id == model_id, Extraction.status != Status.RUNNING.value]
    if schema:
        conditions.append(Extraction.schema_name == schema)
    if statuses:
        conditions.append(Extraction.status.in_(list(statuses)))
    rows = session.execute(
        select(Extraction.model_id, Extraction.schema_name, Extraction.status, func.count())
        .where(*conditions)
        .group_by(Extraction.model_id, Extraction.schema_name, Extraction.status)
    )
    forgotten = Forgotten({(m, s, st): n for m, s, st, n in rows})
    if not dry_run and forgotten.extractions:
        ids = select(Extraction.id).where(*conditions).scalar_subquery()
        session.execute(delete(ExtractionEvent).where(ExtractionEvent.extraction_id.in_(ids)))
        session.execute(
            delete(Extraction).where(*conditions).execution_options(synchronize_session=False)
        )
    return forgotten


# Claims (claims.py) and the typed outcome (outcome.py) are part of this API.
__all__ = [
    "ExtractionOutcome",
    "UnitOfWork",
    "claim",
    "current_extraction",
    "is_dead_local_worker",
    "release",
    "renew_claim",
    "save_outcome",
    "worker_name",
]
