"""Store functions. Each takes a Session; the caller (flow task or CLI) owns the transaction.

Claims make concurrent workers safe on PostgreSQL and SQLite alike: a worker owns an extraction
only after a conditional UPDATE (compare-and-set on status and lease) changed exactly one row,
and only the owner can write the result.
"""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from pipeline.pathtext import to_text
from pipeline.store.models import (
    Document,
    DocumentPath,
    Extraction,
    ExtractionEvent,
    Page,
    Run,
    utcnow,
)
from pipeline.types import PageImage, Status


def worker_name() -> str:
    """Who is working: user@host:pid, stored with claims, runs and history."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}:{os.getpid()}"


def is_dead_local_worker(worker: str) -> bool:
    """True when `worker` (user@host:pid) ran on this machine and its process no longer exists.
    False when unsure (another host, an unparsable name, a pid now used by another process)."""
    identity, _, pid_text = worker.rpartition(":")
    host = identity.partition("@")[2]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def _dead_local_claimant(session: Session, unit: UnitOfWork) -> str | None:
    claimant = session.scalar(
        select(Extraction.claimed_by).where(unit.where(), Extraction.status == Status.RUNNING.value)
    )
    return claimant if claimant and is_dead_local_worker(claimant) else None


def _insert_ignoring_conflicts(
    session: Session, model: type, values: dict[str, Any], keys: Sequence[str]
) -> None:
    """INSERT ... ON CONFLICT DO NOTHING, race-free on both dialects."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(model).values(**values).on_conflict_do_nothing(index_elements=list(keys))
    session.execute(statement)


def register_document(
    session: Session, path: Path, sha256: str, size_bytes: int, media_type: str | None
) -> Document:
    """The Document for these bytes (created on first sight), with `path` recorded."""
    now = utcnow()
    _insert_ignoring_conflicts(
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
    _insert_ignoring_conflicts(
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


@dataclass(frozen=True)
class UnitOfWork:
    """The identity of an extraction: rerunning the same unit does no new work."""

    document_id: int
    schema_name: str
    schema_version: str
    model_id: str
    prompt_version: str

    def where(self) -> Any:
        return and_(
            Extraction.document_id == self.document_id,
            Extraction.schema_name == self.schema_name,
            Extraction.schema_version == self.schema_version,
            Extraction.model_id == self.model_id,
            Extraction.prompt_version == self.prompt_version,
        )


def claim(
    session: Session,
    unit: UnitOfWork,
    worker: str,
    *,
    lease: timedelta,
    run_id: int | None = None,
    redo: Sequence[Status] = (),
) -> Extraction | None:
    """Take ownership of `unit`, creating its row if needed; None when it is not ours to do.

    Claimable: a new or pending row, a running row whose lease expired (its worker died), a
    running row of a worker on this machine whose process is gone (killed: no need to wait
    for the lease), or a final row whose status is in `redo` (an explicit rerun). Commit
    right after, so other workers see the claim.
    """
    now = utcnow()
    _insert_ignoring_conflicts(
        session,
        Extraction,
        {
            "document_id": unit.document_id,
            "schema_name": unit.schema_name,
            "schema_version": unit.schema_version,
            "model_id": unit.model_id,
            "prompt_version": unit.prompt_version,
            "status": Status.PENDING.value,
            "created_at": now,
            "updated_at": now,
            "review_reasons": [],
            "errors": [],
            "raw_outputs": [],
            "provenance": {},
            "timings": {},
        },
        ["document_id", "schema_name", "schema_version", "model_id", "prompt_version"],
    )
    running = Extraction.status == Status.RUNNING.value
    claimable = [
        Extraction.status == Status.PENDING.value,
        and_(running, Extraction.claimed_at < now - lease),
        and_(running, Extraction.claimed_by == worker),  # our own claim (a task retry)
    ]
    dead = _dead_local_claimant(session, unit)
    if dead is not None:
        claimable.append(and_(running, Extraction.claimed_by == dead))
    if redo:
        claimable.append(Extraction.status.in_([s.value for s in redo]))
    result = session.execute(
        update(Extraction)
        .where(unit.where(), or_(*claimable))
        .values(
            status=Status.RUNNING.value,
            claimed_by=worker,
            claimed_at=now,
            updated_at=now,
            run_id=run_id,
            attempts=Extraction.attempts + 1,
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    if dead is not None:
        _close_interrupted_runs(session, dead, worker)
    extraction = session.scalars(select(Extraction).where(unit.where())).one()
    session.refresh(extraction)
    session.add(
        ExtractionEvent(
            extraction=extraction,
            run_id=run_id,
            status=Status.RUNNING.value,
            attempt=extraction.attempts,
            worker=worker,
        )
    )
    return extraction


def _close_interrupted_runs(session: Session, dead: str, worker: str) -> None:
    """The runs a killed process started (never finished) end now, marked interrupted."""
    session.execute(
        update(Run)
        .where(Run.started_by == dead, Run.finished_at.is_(None))
        .values(finished_at=utcnow(), counts={"interrupted": True, "taken_over_by": worker})
        .execution_options(synchronize_session=False)
    )


def _owned(extraction_id: int, worker: str) -> tuple[Any, ...]:
    """The condition under which `worker` still holds its claim on the extraction."""
    return (
        Extraction.id == extraction_id,
        Extraction.claimed_by == worker,
        Extraction.status == Status.RUNNING.value,
    )


def renew_claim(session: Session, extraction_id: int, worker: str) -> bool:
    """Extend the lease of a claim we hold; False when someone else took it over."""
    result = session.execute(
        update(Extraction)
        .where(*_owned(extraction_id, worker))
        .values(claimed_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def release(session: Session, extraction_id: int, worker: str, reason: str) -> bool:
    """Give a claim back (status pending) when the run stops for a reason that is not the
    document's fault (configuration, database), so the next run picks it up at once."""
    result = session.execute(
        update(Extraction)
        .where(*_owned(extraction_id, worker))
        .values(status=Status.PENDING.value, claimed_by=None, claimed_at=None, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    session.add(
        ExtractionEvent(
            extraction_id=extraction_id,
            status=Status.PENDING.value,
            worker=worker,
            error_message=reason,
        )
    )
    return True


def current_extraction(session: Session, unit: UnitOfWork) -> Extraction | None:
    return session.scalars(select(Extraction).where(unit.where())).one_or_none()


# What a final history event copies from the outcome: the whole attempt, so that nothing about
# it is lost when a later attempt replaces the current result.
SNAPSHOT_FIELDS = (
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


def save_outcome(session: Session, extraction_id: int, worker: str, fields: dict[str, Any]) -> bool:
    """Write a final outcome if we still own the claim, and append it to the history.

    `fields` are Extraction columns (status, record, errors, tokens, timings...). Returns False
    (writing nothing) when the claim was lost to another worker after our lease expired.

    A failed attempt never erases an earlier record: when the unit already holds one (this was
    a rerun of a succeeded, needs_review or partial result), the failure goes into the history
    and the row keeps its earlier outcome, with a second event that says so.
    """
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
    kept = _status_to_keep(session, extraction_id, fields, has_record=earlier is not None)
    values = dict(fields) if kept is None else {"status": kept}
    session.execute(
        update(Extraction)
        .where(Extraction.id == extraction_id)
        .values(**values, claimed_by=None, claimed_at=None)
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
                error_message=f"attempt {attempt} failed; the earlier {kept} record was kept",
            )
        )
    return True


def _status_to_keep(
    session: Session, extraction_id: int, fields: dict[str, Any], *, has_record: bool
) -> str | None:
    """The earlier final status to keep instead of writing `fields`, or None to write them."""
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


def status_counts(session: Session) -> dict[str, int]:
    rows = session.execute(select(Extraction.status, func.count()).group_by(Extraction.status))
    return {status: count for status, count in rows}


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
    found.update({d.id: d for d in session.scalars(by_name)})
    return sorted(found.values(), key=lambda d: d.id)


def seen_since(session: Session, since: datetime) -> list[Document]:
    return list(session.scalars(select(Document).where(Document.last_seen_at >= since)))
