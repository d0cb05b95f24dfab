"""One document, end to end: the spine of the pipeline.

`flows.extract` registers every file of a run first (`register`: hash, sniff, one Document row per
content); `process` then takes one registered document through the stages, top to bottom:

    split -> plan -> claim -> render (pages: blank, upright; + words) -> extract -> duplicates
    -> vouch -> finalize -> save

(`split`: a file that holds several documents goes down the rest of the path once per child
document, a page range of the file.)

These are plain functions the Prefect tasks wrap (and tests call directly). Each takes ids and
paths, owns its short transactions through the session factory it is given, and returns a small
`Outcome` per (document, schema) for the run summary.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from pipeline import steps
from pipeline.backends import VisionModel, get_model
from pipeline.errors import ConfigError, InfrastructureError, InputError, StoreError
from pipeline.extraction import ExtractionResult, extract
from pipeline.finalize import failed, finalize
from pipeline.ingest import IngestedFile, RejectedFile, ingest_file
from pipeline.render.words import check_ocr
from pipeline.routing import AUTO
from pipeline.routing.plan import plan_schemas
from pipeline.settings import Settings
from pipeline.split.stage import split_bundle
from pipeline.steps import Outcome, Registered
from pipeline.store import repository as repo
from pipeline.types import ErrorCategory, ErrorItem, Status
from pipeline.vouch import vouch
from schemas import get_schema

log = logging.getLogger(__name__)


def register(factory: sessionmaker[Session], path: Path, settings: Settings) -> Registered:
    """Hash and sniff `path`, and register its Document. A file that cannot be a document is
    still registered (by hash) and its problem returned, so it gets a recorded status."""
    error: ErrorItem | None = None
    try:
        file = ingest_file(path, settings.raster)
    except RejectedFile as exc:  # hashed, then refused: still a document with a status
        error = ErrorItem(exc.category, exc.message)
        file = IngestedFile(path, exc.sha256, "", exc.size_bytes)
    with factory.begin() as session:
        document = repo.register_document(
            session, path, file.sha256, file.size_bytes, file.media_type or None
        )
        return Registered(document.id, file, error)


def process(
    factory: sessionmaker[Session],
    registered: Registered,
    settings: Settings,
    *,
    run_id: int | None = None,
    redo: Sequence[Status] = (),
    model: VisionModel | None = None,
    force: bool = False,
) -> list[Outcome]:
    """Extract every configured schema from one registered document and store the results.

    Units already done (same document, schema, version, model, prompt version) are skipped
    unless their status is in `redo`. Never raises for a bad document: its failure is stored.
    Raises ConfigError / StoreError (after giving its claims back) when the run itself is broken.
    A reviewer's decision (approved, corrected, rejected) stands, the new attempt going into
    the history, unless `force`.
    """
    started = time.perf_counter()
    check_ocr(settings)  # OCR forced without Tesseract stops the run before any work
    model = model or get_model(settings)
    documents = split_bundle(factory, registered, settings, model)
    if len(documents) > 1 or documents[0].part != registered.part:  # a bundle: each child
        return [  # document (a page range of the file) goes down this same path
            outcome
            for child in documents
            for outcome in process(
                factory, child, settings, run_id=run_id, redo=redo, model=model, force=force
            )
        ]
    registered = documents[0]  # the file is one document (with the doubts about its pages)
    plan = plan_schemas(
        factory,
        registered.document_id,
        settings,
        model,
        lambda: steps.render_all(registered.file, settings, part=registered.part),
        registered.error,
        document=registered.path,
    )
    claims = steps.claim(factory, registered, plan.names, model, run_id, redo, settings)
    if not claims.ids:
        return claims.skipped
    try:
        if registered.error is not None:
            raise InputError(registered.error.category, registered.error.message)
        pages = steps.render(factory, registered, settings)
        words = steps.read_words(registered, pages, settings)  # beside the model, never before it
        extracted = {}
        for name in claims.schemas():
            claims.renew(factory)  # a long document must not look abandoned
            extracted[name] = extract(
                pages,
                get_schema(name),
                model,
                settings,
                timeout_s=claims.time_left(),
                document=registered.path,
            )
        raster = steps.finish_render(factory, registered, pages)
        duplicates = {
            name: steps.find_duplicates(factory, registered, extracted[name], settings)
            for name in extracted
        }
        page_words = words.result(raster.pages, claims.time_left()) if words else None
        results = {
            name: finalize(
                extracted[name],
                settings,
                page_count=raster.page_count,
                render_errors=raster.errors,
                route=plan.route if plan.route and plan.route.schema_name == name else None,
                pages=raster.pages,
                duplicates=duplicates[name],
                doubts=registered.doubts,
                vouched=vouch(extracted[name], page_words, settings),
            )
            for name in extracted
        }
        if AUTO in claims.ids and plan.failure is not None:
            results[AUTO] = failed(AUTO, plan.failure)
        steps.add_render_timings(results, pages, claims)
    except (ConfigError, InfrastructureError) as exc:  # the run is broken, not the document
        claims.release(factory, str(exc))
        raise
    except OperationalError as exc:  # the database went away mid-document: not its fault
        claims.release(factory, "database connection lost")
        raise StoreError(f"lost the database connection: {str(exc.orig or exc)[:200]}") from exc
    except InputError as exc:
        item = ErrorItem(exc.category, exc.message, exc.page)
        results = {name: failed(name, item) for name in claims.ids}
    except Exception as exc:  # a bug must not take the batch down: record it, go on
        log.exception("internal error on %s", registered.path)
        results = {name: failed(name, _internal_error(exc)) for name in claims.ids}
    return steps.save(factory, registered, claims, results, model, settings, started, force)


def _internal_error(exc: Exception) -> ErrorItem:
    return ErrorItem(
        ErrorCategory.INTERNAL_ERROR,
        f"{type(exc).__name__}: {exc} (a bug: the traceback is in the run log; "
        "please report it with the document)",
    )


__all__ = ["ExtractionResult", "Outcome", "Registered", "process", "register"]
