"""Claims: how concurrent workers share documents safely on PostgreSQL and SQLite alike.

A worker owns an extraction only after a conditional UPDATE (compare-and-set on status and lease)
changed exactly one row, and only the owner can write the result (`owned`). A claim whose lease
ran out, or whose local worker process is gone, can be taken over.
"""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from pipeline.store.models import Extraction, ExtractionEvent, utcnow
from pipeline.types import Status


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


def insert_ignoring_conflicts(
    session: Session, model: type, values: dict[str, Any], keys: Sequence[str]
) -> None:
    """INSERT ... ON CONFLICT DO NOTHING, race-free on both dialects."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(model).values(**values).on_conflict_do_nothing(index_elements=list(keys))
    session.execute(statement)


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
    insert_ignoring_conflicts(
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
            version=Extraction.version + 1,
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
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


def owned(extraction_id: int, worker: str) -> tuple[Any, ...]:
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
        .where(*owned(extraction_id, worker))
        .values(claimed_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def release(session: Session, extraction_id: int, worker: str, reason: str) -> bool:
    """Give a claim back (status pending) when the run stops for a reason that is not the
    document's fault (configuration, database), so the next run picks it up at once."""
    result = session.execute(
        update(Extraction)
        .where(*owned(extraction_id, worker))
        .values(
            status=Status.PENDING.value,
            claimed_by=None,
            claimed_at=None,
            updated_at=utcnow(),
            version=Extraction.version + 1,
        )
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
