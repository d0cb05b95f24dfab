"""The steps of the spine (`pipeline.runner.process`) that touch the store or the renderer:
claim, render (pages streamed to the model as they are rendered), save.

Each step is a small function over explicit data; the runner composes them in order.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import timedelta

from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from pipeline.backends import VisionModel, backend_name_for
from pipeline.errors import InputError, StoreError
from pipeline.extraction import ExtractionResult
from pipeline.ingest import IngestedFile
from pipeline.prompts import PROMPT_VERSION
from pipeline.render.pagestream import PageStream
from pipeline.render.passwords import load_passwords
from pipeline.render.raster import RasterResult, rasterize
from pipeline.render.words import WordsReader
from pipeline.routing import AUTO
from pipeline.routing.plan import unit_identity
from pipeline.settings import Settings
from pipeline.store import repository as repo
from pipeline.store.models import Document
from pipeline.types import ErrorCategory, ErrorItem, PageImage, Status
from schemas import schema_reference

log = logging.getLogger(__name__)

DB_RETRY_DELAY_S = 1.0


@dataclass(frozen=True)
class Registered:
    """A registered document: its row id, the file as ingested (the bytes that were hashed), and
    the problem that makes it unreadable, if any (it still gets a status)."""

    document_id: int
    file: IngestedFile
    error: ErrorItem | None

    @property
    def sha256(self) -> str:
        return self.file.sha256

    @property
    def path(self) -> str:
        return str(self.file.path)


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


# -- claim -------------------------------------------------------------------------------------


@dataclass
class Claims:
    """The units of one document this worker claimed (schema name -> extraction id), the ones it
    skipped (done already, or held by another worker), and the document's deadline."""

    worker: str
    ids: dict[str, int]
    skipped: list[Outcome]
    deadline: float  # time.monotonic() by which extraction must end
    cpu_started: float = field(default_factory=time.thread_time)

    def schemas(self) -> list[str]:
        """The claimed schemas the model extracts (`auto` only records a routing failure)."""
        return [name for name in self.ids if name != AUTO]

    def time_left(self) -> float:
        """Seconds left before the document's deadline (fixed when it was claimed)."""
        return max(0.0, self.deadline - time.monotonic())

    def renew(self, factory: sessionmaker[Session]) -> None:
        with factory.begin() as session:
            for extraction_id in self.ids.values():
                repo.renew_claim(session, extraction_id, self.worker)

    def release(self, factory: sessionmaker[Session], reason: str) -> None:
        """Give the claims back (the run stopped for a reason that is not the document's)."""
        try:
            with factory.begin() as session:
                for extraction_id in self.ids.values():
                    repo.release(session, extraction_id, self.worker, reason)
        except SQLAlchemyError:  # the database itself is gone: the lease expiry frees the claims
            log.warning("could not release claims after: %s", reason)


def claim(
    factory: sessionmaker[Session],
    registered: Registered,
    names: list[str],
    model: VisionModel,
    run_id: int | None,
    redo: Sequence[Status],
    settings: Settings,
) -> Claims:
    """Claim every schema's unit of work in one transaction (visible to other workers at once)."""
    worker = repo.worker_name()
    lease = timedelta(seconds=settings.claim_lease_s)
    claims = Claims(worker, {}, [], time.monotonic() + settings.extraction.timeout_s)
    with factory.begin() as session:
        for name in names:
            schema_name, schema_version = unit_identity(name)
            unit = repo.UnitOfWork(
                registered.document_id, schema_name, schema_version, model.model_id, PROMPT_VERSION
            )
            extraction = repo.claim(session, unit, worker, lease=lease, run_id=run_id, redo=redo)
            if extraction is not None:
                claims.ids[name] = extraction.id
                continue
            current = repo.current_extraction(session, unit)
            document = session.get(Document, registered.document_id)
            claims.skipped.append(
                Outcome(
                    registered.path,
                    registered.sha256,
                    schema_name,
                    current.status if current else Status.PENDING.value,
                    (current.reason if current else None) or "already done (unchanged)",
                    document.page_count if document else None,
                    0.0,
                    did_work=False,
                )
            )
    return claims


# -- render ------------------------------------------------------------------------------------


def render(
    factory: sessionmaker[Session], registered: Registered, settings: Settings
) -> PageStream:
    """Start rendering; pages reach the model as they render, not after the last one. The page
    count is recorded as soon as rendering ends (best effort, while the model still works)."""
    file = registered.file
    return PageStream(
        lambda on_page: render_all(file, settings, on_page),
        on_done=lambda raster: _record_pages(factory, registered, raster, early=True),
    )


def read_words(registered: Registered, pages: PageStream, settings: Settings) -> WordsReader | None:
    """Start reading each page's words as it renders (text layer, OCR), beside the model: only
    `vouch` waits for them. None when grounding is off."""
    if not settings.grounding.enabled:
        return None
    return WordsReader(registered.file, pages, settings)


def finish_render(
    factory: sessionmaker[Session], registered: Registered, pages: PageStream
) -> RasterResult:
    """The finished rendering (raises what ended it), its pages recorded for good."""
    raster = pages.result()
    _record_pages(factory, registered, raster)
    return raster


def add_render_timings(
    results: dict[str, ExtractionResult], pages: PageStream, claims: Claims
) -> None:
    cpu_s = time.thread_time() - claims.cpu_started  # this worker thread (the model runs apart)
    for result in results.values():
        result.timings.update(raster_s=round(pages.seconds, 3), worker_cpu_s=round(cpu_s, 3))


def render_all(
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


def _record_pages(
    factory: sessionmaker[Session],
    registered: Registered,
    raster: RasterResult,
    early: bool = False,
) -> None:
    """Store the page count and page sizes. `early`: as soon as rendering ends (while the model
    still works), best effort; the write after extraction is the one that must succeed."""
    try:
        with factory.begin() as session:
            document = session.get(Document, registered.document_id)
            assert document is not None
            repo.record_pages(session, document, raster.page_count, raster.pages)
    except SQLAlchemyError as exc:
        if not early:
            raise
        log.warning("could not record the pages of %s yet: %s", registered.path, exc)


# -- save --------------------------------------------------------------------------------------


def save(
    factory: sessionmaker[Session],
    registered: Registered,
    claims: Claims,
    results: dict[str, ExtractionResult],
    model: VisionModel,
    settings: Settings,
    started: float,
    force: bool = False,
) -> list[Outcome]:
    """Store every schema's result in one transaction; the run summary's rows. `force`: replace
    a reviewer's decision too (`rerun --force`)."""
    seconds = time.perf_counter() - started
    outcomes = {
        name: stored_outcome(results[name], model, settings, seconds) for name in claims.ids
    }
    saved = _save_with_retries(factory, claims, outcomes, force=force)
    rows = list(claims.skipped)
    for name, result in results.items():
        if not saved[name]:
            log.warning(
                "claim on %s/%s was taken over by another worker; result dropped",
                registered.sha256[:12],
                name,
            )
        rows.append(
            Outcome(
                registered.path,
                registered.sha256,
                result.schema_name,  # the stored name, not the reference (receipt.json)
                result.status.value,
                result.error_message or _review_summary(result),
                result.pages_total or None,
                round(seconds, 2),
                did_work=True,
            )
        )
    return rows


def _save_with_retries(
    factory: sessionmaker[Session],
    claims: Claims,
    outcomes: dict[str, repo.ExtractionOutcome],
    attempts: int = 3,
    *,
    force: bool = False,
) -> dict[str, bool]:
    """Every schema's outcome in one transaction, retried when the connection drops (the pool
    reconnects), so an hour of model work is not lost to a database blip."""
    for attempt in range(1, attempts + 1):
        try:
            with factory.begin() as session:
                return {
                    name: repo.save_outcome(
                        session, extraction_id, claims.worker, outcomes[name], force=force
                    )
                    for name, extraction_id in claims.ids.items()
                }
        except OperationalError as exc:
            if attempt == attempts:
                raise StoreError(
                    f"could not store the results after {attempts} tries: "
                    f"{str(exc.orig or exc).strip().splitlines()[0]}"
                ) from exc
            log.warning("database write failed (%s); retrying", type(exc.orig).__name__)
            time.sleep(DB_RETRY_DELAY_S * attempt)
    raise AssertionError("unreachable")


def _review_summary(result: ExtractionResult) -> str | None:
    if not result.review_reasons:
        return None
    more = f" (+{len(result.review_reasons) - 1} more)" if len(result.review_reasons) > 1 else ""
    return result.review_reasons[0] + more


def stored_outcome(
    result: ExtractionResult, model: VisionModel, settings: Settings, seconds: float
) -> repo.ExtractionOutcome:
    """The typed outcome the store keeps: the result, its provenance, tokens and timings."""
    calls = result.calls
    category = result.error_category
    model_seconds = sum(c.seconds for c in calls)
    return repo.ExtractionOutcome(
        status=result.status.value,
        error_category=category.value if category else None,
        error_message=result.error_message,
        record=result.record,
        review_reasons=result.review_reasons,
        errors=[e.to_json() for e in result.errors],
        raw_outputs=[c.to_json() for c in calls],
        provenance={
            **({"route": result.route} if result.route else {}),
            **({"grounding": result.grounding} if result.grounding is not None else {}),
            "model_id": model.model_id,
            "backend": backend_name_for(settings),
            "prompt_version": result.prompt_version,
            "schema_version": result.schema_version,
            **({"schema_ref": ref} if (ref := schema_reference(result.schema_name)) else {}),
            "tiling": settings.tiling.strategy,
            "dpi": settings.raster.dpi,
            "max_new_tokens": settings.model.max_new_tokens,
        },
        timings={
            **result.timings,
            "model_s": round(model_seconds, 3),
            "document_s": round(seconds, 3),
        },
        field_confidence=result.field_confidence,
        pages_total=result.pages_total,
        pages_failed=result.pages_failed,
        image_tokens=sum(c.image_tokens for c in calls),
        input_tokens=sum(c.input_tokens for c in calls),
        output_tokens=sum(c.output_tokens for c in calls),
        model_calls=len(calls),
        seconds=round(seconds, 3),
        cpu_seconds=result.timings.get("worker_cpu_s"),
        gpu_seconds=round(model_seconds, 3) if _on_gpu(model) else None,
    )


def _on_gpu(model: VisionModel) -> bool:
    inner = getattr(model, "inner", model)  # behind the batching layer
    device = getattr(inner, "device", None)
    return getattr(device, "type", None) == "cuda"
