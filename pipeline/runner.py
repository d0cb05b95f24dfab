"""One document, end to end: register, claim, rasterize, extract per schema, store.

These are the plain functions the Prefect tasks wrap (and the tests call directly). Each takes
ids and paths, owns its short transactions through the session factory it is given, and returns
a small `Outcome` per (document, schema) for the run summary.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from pipeline.backends import VisionModel, backend_name_for, get_model
from pipeline.errors import ConfigError, InputError, StoreError
from pipeline.extraction import ExtractionResult, extract
from pipeline.ingest import IngestedFile, RejectedFile, ingest_file
from pipeline.prompts import PROMPT_VERSION
from pipeline.raster import rasterize
from pipeline.settings import Settings
from pipeline.store import repository as repo
from pipeline.store.models import Document
from pipeline.types import ErrorCategory, ErrorItem, Status
from schemas import get_schema

log = logging.getLogger(__name__)

CLAIM_LEASE = timedelta(hours=1)


@dataclass(frozen=True)
class Outcome:
    """What happened to one (document, schema) in this run; small enough for Prefect results."""

    path: str
    sha256: str
    schema: str
    status: str
    reason: str | None
    pages: int | None
    seconds: float
    did_work: bool

    def to_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class Registered:
    document_id: int
    sha256: str
    path: str
    error: ErrorItem | None


def register(factory: sessionmaker[Session], path: Path, settings: Settings) -> Registered:
    """Hash and sniff `path`, and register its Document. A file that cannot be a document is
    still registered (by hash) and its problem returned, so it gets a recorded status."""
    error: ErrorItem | None = None
    try:
        file = ingest_file(path, settings.raster)
        sha256, size, media_type = file.sha256, file.size_bytes, file.media_type
    except RejectedFile as exc:  # hashed, then refused: still a document with a status
        error = ErrorItem(exc.category, exc.message)
        sha256, size, media_type = exc.sha256, exc.size_bytes, None
    with factory.begin() as session:
        document = repo.register_document(session, path, sha256, size, media_type)
        return Registered(document.id, sha256, str(path), error)


def process(
    factory: sessionmaker[Session],
    registered: Registered,
    settings: Settings,
    *,
    run_id: int | None = None,
    redo: Sequence[Status] = (),
    model: VisionModel | None = None,
) -> list[Outcome]:
    """Extract every configured schema from one registered document and store the results.

    Units already done (same document, schema, version, model, prompt version) are skipped
    unless their status is in `redo`. Never raises for a bad document: its failure is stored.
    """
    started = time.perf_counter()
    model = model or get_model(settings)
    worker = repo.worker_name()
    claimed, outcomes = _claim_units(factory, registered, settings, model, worker, run_id, redo)
    if not claimed:
        return outcomes
    try:
        results, pages = _extract_all(factory, registered, settings, model, claimed)
    except (ConfigError, StoreError) as exc:  # the run is broken, not the document
        _release_all(factory, claimed, worker, str(exc))
        raise
    except InputError as exc:
        item = ErrorItem(exc.category, exc.message, exc.page)
        results, pages = {name: _failed(name, item) for name in claimed}, None
    except Exception as exc:  # a bug must not take the batch down: record it, go on
        log.exception("internal error on %s", registered.path)
        item = ErrorItem(
            ErrorCategory.INTERNAL_ERROR,
            f"{type(exc).__name__}: {exc} (a bug: the traceback is in the run log; "
            "please report it with the document)",
        )
        results, pages = {name: _failed(name, item) for name in claimed}, None
    seconds = time.perf_counter() - started
    for name, extraction_id in claimed.items():
        result = results[name]
        with factory.begin() as session:
            saved = repo.save_outcome(
                session, extraction_id, worker, _fields(result, model, settings, seconds)
            )
        if not saved:
            log.warning(
                "claim on %s/%s was taken over by another worker; result dropped",
                registered.sha256[:12],
                name,
            )
        outcomes.append(
            Outcome(
                registered.path,
                registered.sha256,
                name,
                result.status.value,
                result.error_message or _review_summary(result),
                pages,
                round(seconds, 2),
                did_work=True,
            )
        )
    return outcomes


def _release_all(
    factory: sessionmaker[Session], claimed: dict[str, int], worker: str, reason: str
) -> None:
    try:
        with factory.begin() as session:
            for extraction_id in claimed.values():
                repo.release(session, extraction_id, worker, reason)
    except SQLAlchemyError:  # the database itself is gone: the lease expiry frees the claims
        log.warning("could not release claims after: %s", reason)


def _claim_units(
    factory: sessionmaker[Session],
    registered: Registered,
    settings: Settings,
    model: VisionModel,
    worker: str,
    run_id: int | None,
    redo: Sequence[Status],
) -> tuple[dict[str, int], list[Outcome]]:
    claimed: dict[str, int] = {}
    skipped: list[Outcome] = []
    for name in settings.schemas:
        schema = get_schema(name)
        unit = repo.UnitOfWork(
            registered.document_id,
            schema.schema_name,
            schema.schema_version,
            model.model_id,
            PROMPT_VERSION,
        )
        with factory.begin() as session:
            extraction = repo.claim(
                session, unit, worker, lease=CLAIM_LEASE, run_id=run_id, redo=redo
            )
            if extraction is not None:
                claimed[name] = extraction.id
                continue
            current = repo.current_extraction(session, unit)
            document = session.get(Document, registered.document_id)
            skipped.append(
                Outcome(
                    registered.path,
                    registered.sha256,
                    name,
                    current.status if current else Status.PENDING.value,
                    (current.error_message if current else None) or "already done (unchanged)",
                    document.page_count if document else None,
                    0.0,
                    did_work=False,
                )
            )
    return claimed, skipped


def _extract_all(
    factory: sessionmaker[Session],
    registered: Registered,
    settings: Settings,
    model: VisionModel,
    claimed: dict[str, int],
) -> tuple[dict[str, ExtractionResult], int]:
    if registered.error is not None:
        raise InputError(registered.error.category, registered.error.message)
    with factory() as session:
        document = session.get(Document, registered.document_id)
        assert document is not None
        file = IngestedFile(
            Path(registered.path), document.sha256, document.media_type or "", document.size_bytes
        )
    raster = rasterize(file, settings.raster, settings.page_cache_dir)
    with factory.begin() as session:
        document = session.get(Document, registered.document_id)
        assert document is not None
        repo.record_pages(session, document, raster.page_count, raster.pages)
    results = {
        name: extract(
            raster.pages,
            get_schema(name),
            model,
            settings,
            page_count=raster.page_count,
            page_errors=raster.errors,
        )
        for name in claimed
    }
    return results, raster.page_count


def _failed(schema_name: str, item: ErrorItem) -> ExtractionResult:
    schema = get_schema(schema_name)
    return ExtractionResult(
        schema.schema_name,
        schema.schema_version,
        PROMPT_VERSION,
        Status.FAILED,
        None,
        errors=[item],
    )


def _review_summary(result: ExtractionResult) -> str | None:
    if not result.review_reasons:
        return None
    more = f" (+{len(result.review_reasons) - 1} more)" if len(result.review_reasons) > 1 else ""
    return result.review_reasons[0] + more


def _fields(
    result: ExtractionResult, model: VisionModel, settings: Settings, seconds: float
) -> dict[str, object]:
    calls = result.calls
    category = result.error_category
    return {
        "status": result.status.value,
        "error_category": category.value if category else None,
        "error_message": result.error_message,
        "record": result.record,
        "review_reasons": result.review_reasons,
        "errors": [e.to_json() for e in result.errors],
        "raw_outputs": [c.to_json() for c in calls],
        "provenance": {
            "model_id": model.model_id,
            "backend": backend_name_for(settings),
            "prompt_version": result.prompt_version,
            "schema_version": result.schema_version,
            "tiling": settings.tiling.strategy,
            "dpi": settings.raster.dpi,
            "max_new_tokens": settings.model.max_new_tokens,
        },
        "timings": {**result.timings, "document_s": round(seconds, 3)},
        "pages_total": result.pages_total,
        "pages_failed": result.pages_failed,
        "image_tokens": sum(c.image_tokens for c in calls),
        "input_tokens": sum(c.input_tokens for c in calls),
        "output_tokens": sum(c.output_tokens for c in calls),
        "model_calls": len(calls),
        "seconds": round(seconds, 3),
    }
