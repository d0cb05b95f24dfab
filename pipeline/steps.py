"""The steps of the spine (`pipeline.runner.process`) that touch the store or the renderer:
claim, render (pages streamed to the model as they are rendered), save. (The split step, which
needs these, is `pipeline.split.stage`.)

Each step is a small function over explicit data; the runner composes them in order.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import timedelta

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from pipeline.backends import VisionModel
from pipeline.duplicates import DuplicateEvidence, invoice_key
from pipeline.errors import InputError
from pipeline.extraction import Extracted, ExtractionResult
from pipeline.ingest import IngestedFile
from pipeline.pages import preparing
from pipeline.prompts import PROMPT_VERSION
from pipeline.provenance import stored_outcome
from pipeline.render.pagestream import PageStream
from pipeline.render.passwords import load_passwords
from pipeline.render.raster import RasterResult, rasterize
from pipeline.render.words import WordsReader
from pipeline.routing import AUTO
from pipeline.routing.plan import unit_identity
from pipeline.settings import Settings
from pipeline.split import Part, describe
from pipeline.store import duplicates as store_duplicates
from pipeline.store import repository as repo
from pipeline.store.db import retry_on_disconnect
from pipeline.store.models import Document, Extraction
from pipeline.types import ErrorCategory, ErrorItem, PageImage, Status

log = logging.getLogger(__name__)

DB_RETRY_DELAY_S = 1.0


@dataclass(frozen=True)
class Registered:
    """A registered document: its row id, the file as ingested (the bytes that were hashed), and
    the problem that makes it unreadable, if any (it still gets a status)."""

    document_id: int
    file: IngestedFile
    error: ErrorItem | None
    part: Part | None = None  # a child document of a bundle: its pages of the file
    key: str | None = None  # a child document's key (its `sha256` column)
    doubts: tuple[str, ...] = ()  # unsure boundaries of its page range (review reasons)

    @property
    def sha256(self) -> str:
        return self.key or self.file.sha256

    @property
    def path(self) -> str:
        if self.part is None:
            return str(self.file.path)
        return f"{self.file.path} [pages {describe([self.part])}]"


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
        def renew() -> None:
            with factory.begin() as session:
                for extraction_id in self.ids.values():
                    repo.renew_claim(session, extraction_id, self.worker)

        retry_on_disconnect("renew the claims", renew, delay_s=DB_RETRY_DELAY_S)

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
                    _skip_reason(current),
                    document.page_count if document else None,
                    0.0,
                    did_work=False,
                )
            )
    return claims


def _skip_reason(current: Extraction | None) -> str:
    """Why a unit was not claimed: done already, or in the hands of another run."""
    if current is not None and current.status == Status.RUNNING.value:
        return f"held by another run ({current.claimed_by}); not done here"
    return (current.reason if current else None) or "already done"


# -- render ------------------------------------------------------------------------------------


def render(
    factory: sessionmaker[Session], registered: Registered, settings: Settings
) -> PageStream:
    """Start rendering; pages reach the model as they render, not after the last one. The page
    count is recorded as soon as rendering ends (best effort, while the model still works)."""
    file, part = registered.file, registered.part
    return PageStream(
        lambda on_page: render_all(file, settings, on_page, part),
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
    part: Part | None = None,
) -> RasterResult:
    """Render with no password, then with each password the user's file offers for it; each
    page goes through the pages stage (blank, upright) before `on_page` sees it. `part`: only
    those pages of the file (a child document), numbered as in the file."""
    if part is not None:
        return _render_part(file, settings, on_page, part)
    stage = preparing(settings.pages, on_page)
    return stage.finish(_render_with_passwords(file, settings, stage))


def _render_part(
    file: IngestedFile,
    settings: Settings,
    on_page: Callable[[PageImage, int], None] | None,
    part: Part,
) -> RasterResult:
    first, last = part
    count = last - first + 1

    def on_part_page(page: PageImage, page_count: int) -> None:
        if on_page is not None and first <= page.number <= last:
            on_page(page, count)

    raster = render_all(file, settings, on_part_page)
    return RasterResult(
        count,
        [p for p in raster.pages if first <= p.number <= last],
        [e for e in raster.errors if e.page is None or first <= e.page <= last],
    )


def _render_with_passwords(
    file: IngestedFile, settings: Settings, on_page: Callable[[PageImage, int], None]
) -> RasterResult:
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


# -- duplicates ---------------------------------------------------------------------------------


def find_duplicates(
    factory: sessionmaker[Session], registered: Registered, extracted: Extracted, settings: Settings
) -> DuplicateEvidence | None:
    """The invoices already stored that this one may duplicate (evidence for `finalize`), and
    its key (kept at save). None: not an invoice, no record, nothing to key it by, or off."""
    if not settings.duplicates.enabled or extracted.record is None:
        return None
    if extracted.schema.schema_name != "invoice":
        return None
    key = invoice_key(extracted.record.model_dump(mode="json"))
    if key is None:
        return None
    with factory() as session:
        matches = store_duplicates.find_candidates(
            session, registered.document_id, key, settings.duplicates
        )
    return DuplicateEvidence(key, matches)


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
    evidence = {name: r.duplicates for name, r in results.items() if r.duplicates is not None}
    saved = _save_with_retries(
        factory,
        claims,
        outcomes,
        force=force,
        document_id=registered.document_id,
        evidence=evidence,
    )
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
    document_id: int | None = None,
    evidence: dict[str, DuplicateEvidence] | None = None,
) -> dict[str, bool]:
    """Every schema's outcome in one transaction, retried when the connection drops (the pool
    reconnects), so an hour of model work is not lost to a database blip."""

    def save() -> dict[str, bool]:
        with factory.begin() as session:
            saved = {
                name: repo.save_outcome(
                    session, extraction_id, claims.worker, outcomes[name], force=force
                )
                for name, extraction_id in claims.ids.items()
            }
            for name, found in (evidence or {}).items():  # the key, for the invoices after it
                if saved.get(name) and document_id is not None:
                    store_duplicates.save_evidence(session, claims.ids[name], document_id, found)
            return saved

    return retry_on_disconnect(
        "store the results", save, attempts=attempts, delay_s=DB_RETRY_DELAY_S
    )


def _review_summary(result: ExtractionResult) -> str | None:
    if not result.review_reasons:
        return None
    more = f" (+{len(result.review_reasons) - 1} more)" if len(result.review_reasons) > 1 else ""
    return result.review_reasons[0] + more
