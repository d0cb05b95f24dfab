"""One document, end to end: register, claim, rasterize, extract per schema, store.

These are the plain functions the Prefect tasks wrap (and the tests call directly). Each takes
ids and paths, owns its short transactions through the session factory it is given, and returns
a small `Outcome` per (document, schema) for the run summary.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from pipeline.backends import VisionModel, backend_name_for, get_model
from pipeline.errors import ConfigError, InfrastructureError, InputError, StoreError
from pipeline.extraction import ExtractionResult, add_page_errors, extract
from pipeline.ingest import IngestedFile, RejectedFile, ingest_file
from pipeline.prompts import PROMPT_VERSION
from pipeline.render.pagestream import PageStream
from pipeline.render.passwords import load_passwords
from pipeline.render.raster import RasterResult, rasterize
from pipeline.routing import AUTO
from pipeline.routing.plan import SchemaPlan, plan_schemas, route_review_reason, unit_identity
from pipeline.settings import Settings
from pipeline.store import repository as repo
from pipeline.store.db import retry_on_disconnect
from pipeline.store.models import Document, Extraction
from pipeline.types import ErrorCategory, ErrorItem, PageImage, Status
from schemas import get_schema

log = logging.getLogger(__name__)

DB_RETRY_DELAY_S = 1.0


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
    plan = plan_schemas(
        factory,
        registered.document_id,
        settings,
        model,
        lambda: _rasterize(_ingested(factory, registered), settings),
        registered.error,
    )
    lease = timedelta(seconds=settings.claim_lease_s)
    claimed, outcomes = _claim_units(
        factory, registered, plan.names, model, worker, run_id, redo, lease
    )
    if not claimed:
        return outcomes
    try:
        results, pages = _extract_all(factory, registered, settings, model, claimed, worker)
        _apply_plan(plan, claimed, results, settings)
    except (ConfigError, InfrastructureError) as exc:  # the run is broken, not the document
        _release_all(factory, claimed, worker, str(exc))
        raise
    except OperationalError as exc:  # the database went away mid-document: not its fault
        _release_all(factory, claimed, worker, "database connection lost")
        raise StoreError(f"lost the database connection: {str(exc.orig or exc)[:200]}") from exc
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
    fields = {name: _fields(results[name], model, settings, seconds) for name in claimed}
    saved = _save_with_retries(factory, claimed, worker, fields)
    for name, result in results.items():
        if not saved[name]:
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


def _save_with_retries(
    factory: sessionmaker[Session],
    claimed: dict[str, int],
    worker: str,
    fields: dict[str, dict[str, object]],
    attempts: int = 3,
) -> dict[str, bool]:
    """Every schema's outcome in one transaction, retried when the connection drops (the pool
    reconnects), so an hour of model work is not lost to a database blip."""

    def save() -> dict[str, bool]:
        with factory.begin() as session:
            return {
                name: repo.save_outcome(session, extraction_id, worker, fields[name])
                for name, extraction_id in claimed.items()
            }

    return retry_on_disconnect(
        "store the results", save, attempts=attempts, delay_s=DB_RETRY_DELAY_S
    )


def _release_all(
    factory: sessionmaker[Session], claimed: dict[str, int], worker: str, reason: str
) -> None:
    try:
        with factory.begin() as session:
            for extraction_id in claimed.values():
                repo.release(session, extraction_id, worker, reason)
    except SQLAlchemyError:  # the database itself is gone: the lease expiry frees the claims
        log.warning("could not release claims after: %s", reason)


def _apply_plan(
    plan: SchemaPlan,
    claimed: dict[str, int],
    results: dict[str, ExtractionResult],
    settings: Settings,
) -> None:
    """Record a routing failure under `auto`, and a low-confidence routing as a review reason."""
    if AUTO in claimed and plan.failure is not None:
        results[AUTO] = _failed(AUTO, plan.failure)
    chosen = plan.route.schema_name if plan.route else None
    reason = route_review_reason(plan, settings)
    if chosen in results and reason:
        result = results[chosen]
        result.review_reasons.append(reason)
        if result.status is Status.SUCCEEDED:
            result.status = Status.NEEDS_REVIEW
    if chosen in results and plan.route is not None:
        results[chosen].route = plan.route.to_json()


def _claim_units(
    factory: sessionmaker[Session],
    registered: Registered,
    names: list[str],
    model: VisionModel,
    worker: str,
    run_id: int | None,
    redo: Sequence[Status],
    lease: timedelta,
) -> tuple[dict[str, int], list[Outcome]]:
    claimed: dict[str, int] = {}
    skipped: list[Outcome] = []
    with factory.begin() as session:  # all schemas' claims commit together, visible at once
        for name in names:
            schema_name, schema_version = unit_identity(name)
            unit = repo.UnitOfWork(
                registered.document_id, schema_name, schema_version, model.model_id, PROMPT_VERSION
            )
            extraction = repo.claim(session, unit, worker, lease=lease, run_id=run_id, redo=redo)
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
                    _skip_reason(current),
                    document.page_count if document else None,
                    0.0,
                    did_work=False,
                )
            )
    return claimed, skipped


def _skip_reason(current: Extraction | None) -> str:
    """Why a unit was not claimed: done already, or in the hands of another run."""
    if current is not None and current.status == Status.RUNNING.value:
        return f"held by another run ({current.claimed_by}); not done here"
    return (current.error_message if current else None) or "already done"


def _extract_all(
    factory: sessionmaker[Session],
    registered: Registered,
    settings: Settings,
    model: VisionModel,
    claimed: dict[str, int],
    worker: str,
) -> tuple[dict[str, ExtractionResult], int]:
    if registered.error is not None:
        raise InputError(registered.error.category, registered.error.message)
    cpu_started = time.thread_time()
    file = _ingested(factory, registered)
    # Pages reach the model as they render, not after the last one (the model idles less).
    stream = PageStream(
        lambda on_page: _rasterize(file, settings, on_page),
        on_done=lambda raster: _record_pages(factory, registered, raster, early=True),
    )
    deadline = time.monotonic() + settings.extraction.timeout_s
    results: dict[str, ExtractionResult] = {}
    for name in claimed:
        if name == AUTO:
            continue
        _renew_claims(factory, claimed, worker)  # a long document must not look abandoned
        results[name] = extract(
            stream,
            get_schema(name),
            model,
            settings,
            timeout_s=max(0.0, deadline - time.monotonic()),
        )
    raster = stream.result()
    _record_pages(factory, registered, raster)
    cpu_s = time.thread_time() - cpu_started  # this worker thread (the model runs elsewhere)
    for result in results.values():
        add_page_errors(result, raster.page_count, raster.errors, settings)
        result.timings.update(raster_s=round(stream.seconds, 3), worker_cpu_s=round(cpu_s, 3))
    return results, raster.page_count


def _record_pages(
    factory: sessionmaker[Session],
    registered: Registered,
    raster: RasterResult,
    early: bool = False,
) -> None:
    """Store the page count and page sizes. `early`: as soon as rendering ends (while the model
    still works), best effort; the write after extraction is the one that must succeed (it is
    retried, then raises StoreError)."""

    def record() -> None:
        with factory.begin() as session:
            document = session.get(Document, registered.document_id)
            assert document is not None
            repo.record_pages(session, document, raster.page_count, raster.pages)

    if not early:
        retry_on_disconnect("record the pages", record, delay_s=DB_RETRY_DELAY_S)
        return
    try:
        record()
    except SQLAlchemyError as exc:
        log.warning("could not record the pages of %s yet: %s", registered.path, exc)


def _renew_claims(factory: sessionmaker[Session], claimed: dict[str, int], worker: str) -> None:
    def renew() -> None:
        with factory.begin() as session:
            for extraction_id in claimed.values():
                repo.renew_claim(session, extraction_id, worker)

    retry_on_disconnect("renew the claims", renew, delay_s=DB_RETRY_DELAY_S)


def _ingested(factory: sessionmaker[Session], registered: Registered) -> IngestedFile:
    with factory() as session:
        document = session.get(Document, registered.document_id)
        assert document is not None
        return IngestedFile(
            Path(registered.path), document.sha256, document.media_type or "", document.size_bytes
        )


def _rasterize(
    file: IngestedFile,
    settings: Settings,
    on_page: Callable[[PageImage, int], None] | None = None,
) -> RasterResult:
    """Render with no password, then with each password the user's file offers for it."""
    candidates = load_passwords(settings.passwords_file).candidates(file.path, file.sha256)
    try:
        return rasterize(file, settings.raster, settings.page_cache_dir, on_page=on_page)
    except InputError as exc:
        if exc.category is not ErrorCategory.PASSWORD_REQUIRED or not candidates:
            raise
        refusal = exc
    for password in candidates:
        try:
            return rasterize(
                file, settings.raster, settings.page_cache_dir, password=password, on_page=on_page
            )
        except InputError as exc:
            if exc.category is not ErrorCategory.PASSWORD_REQUIRED:
                raise
            refusal = exc
    raise InputError(
        ErrorCategory.PASSWORD_REQUIRED,
        f"{refusal.message} (none of the {len(candidates)} password(s) in the passwords file "
        "for it opened it)",
    )


def _failed(schema_name: str, item: ErrorItem) -> ExtractionResult:
    name, version = unit_identity(schema_name)
    return ExtractionResult(
        name,
        version,
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
    model_seconds = sum(c.seconds for c in calls)
    return {
        "status": result.status.value,
        "error_category": category.value if category else None,
        "error_message": result.error_message,
        "record": result.record,
        "review_reasons": result.review_reasons,
        "errors": [e.to_json() for e in result.errors],
        "raw_outputs": [c.to_json() for c in calls],
        "provenance": {
            **({"route": result.route} if result.route else {}),
            "model_id": model.model_id,
            "backend": backend_name_for(settings),
            "prompt_version": result.prompt_version,
            "schema_version": result.schema_version,
            "tiling": settings.tiling.strategy,
            "dpi": settings.raster.dpi,
            "max_new_tokens": settings.model.max_new_tokens,
        },
        "timings": {
            **result.timings,
            "model_s": round(model_seconds, 3),
            "document_s": round(seconds, 3),
        },
        "pages_total": result.pages_total,
        "pages_failed": result.pages_failed,
        "image_tokens": sum(c.image_tokens for c in calls),
        "input_tokens": sum(c.input_tokens for c in calls),
        "output_tokens": sum(c.output_tokens for c in calls),
        "model_calls": len(calls),
        "seconds": round(seconds, 3),
        "cpu_seconds": result.timings.get("worker_cpu_s"),
        "gpu_seconds": round(model_seconds, 3) if _on_gpu(model) else None,
    }


def _on_gpu(model: VisionModel) -> bool:
    inner = getattr(model, "inner", model)  # behind the batching layer
    device = getattr(inner, "device", None)
    return getattr(device, "type", None) == "cuda"
