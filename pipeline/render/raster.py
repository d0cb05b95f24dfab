"""Rasterize: a document's pages -> PNG files in the page cache, rendered in a sandbox.

Untrusted bytes are only ever opened in `pipeline.render.worker`, a subprocess with an
address-space cap, started in its own process group so that a deadline kills it together with
poppler (`pipeline.render.client`); one process describes and then renders a document. Time
limits: `render_timeout_s` for each step (reading the page list, or one chunk of `chunk_pages`
pages), and `document_timeout_s` for the whole document. A page that fails becomes an
`ErrorItem`. PDFs are described and rendered by the primary renderer (`settings.renderer`,
poppler or pdfium); a file it cannot open is described by the fallback (`settings.fallback`) and
rendered with it, and pages it fails, times out or crashes on are retried one by one with it.

The cache layout and what is left to render are `pipeline.render.cache`'s.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError, InfrastructureError, InputError
from pipeline.ingest import IMAGE_TYPES, PDF, IngestedFile
from pipeline.render.cache import (
    INFO_FILE,
    Step,
    cache_complete,
    cached_info,
    document_cache_dir,
    expected_size,
    fit_dpi,
    page_cache_path,
    plan,
    size_matches,
    write_json,
)
from pipeline.render.client import WorkerCrashed, Workers, WorkerTimedOut
from pipeline.render.common import CACHE, DocumentError, cache_writes
from pipeline.render.source import VerifiedSource
from pipeline.settings import RasterSettings
from pipeline.types import ErrorCategory, ErrorItem, PageImage, TextDirection

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RasterResult:
    """Pages that rendered (1-based `number`, sorted) and one error item per page that did not."""

    page_count: int
    pages: list[PageImage]
    errors: list[ErrorItem]


def rasterize(
    file: IngestedFile,
    settings: RasterSettings,
    cache_dir: Path,
    password: str | None = None,
    on_page: Callable[[PageImage, int], None] | None = None,
) -> RasterResult:
    """Render every page of `file` to PNG in the page cache; cached pages are not rendered again.

    `on_page(page, page_count)` (if given) is called with each page as soon as its PNG is in
    the cache, cached pages first, so that extraction can start before the last page renders.

    PDF pages are rendered at `settings.dpi`, or at the lower DPI that keeps them under
    `max_page_pixels` (`PageImage.dpi` says which); /Rotate is applied. Images keep their pixels
    (EXIF orientation applied, converted to 8-bit RGB on white); their `dpi` is the one they
    declare, else `settings.dpi`. `password` opens encrypted PDFs.

    Raises `InputError` for the whole document: password_required, not_a_document, corrupt,
    zero_pages, too_large (pages > max_pages, an image above the pixel cap), render_timeout,
    render_crash; and, when no page at all rendered, with the most common page category.
    Raises `ConfigError` when a configured renderer cannot run here (poppler missing).
    """
    kind = _kind(file)
    doc_dir = document_cache_dir(cache_dir, file.sha256)
    try:
        with cache_writes(cache_dir):
            doc_dir.mkdir(parents=True, exist_ok=True)
    except DocumentError as exc:
        raise InfrastructureError(exc.message) from exc
    deadline = time.monotonic() + settings.document_timeout_s
    # The worker reads a private copy whose hash was checked, never the path: a file replaced
    # after it was hashed must not put other bytes' pages in the cache (see render/source.py).
    with Workers(doc_dir) as workers, VerifiedSource(file.path, file.sha256, doc_dir) as source:
        # Pages opened with a password are never described from the cache without one.
        info = cached_info(doc_dir, settings) if password is None else None
        if info is None:
            info = _fetch_info(file, source, kind, settings, password, deadline, workers)
            if password is None:
                write_json(doc_dir / INFO_FILE, info)
        _check_page_count(file, info, settings)
        pages, errors, steps = plan(file, info, settings, cache_dir)
        for page in pages if on_page else ():
            on_page(page, info["page_count"])  # type: ignore[misc]
        password = password if info["use_password"] else None
        render = _DocumentRender(
            file, source, kind, settings, password, cache_dir, info, deadline, on_page
        )
        render.run(steps, workers)
    pages += render.pages
    errors += render.errors
    pages.sort(key=lambda p: p.number)
    errors.sort(key=lambda e: e.page or 0)
    if not pages:
        raise _nothing_rendered(file, errors)
    return RasterResult(info["page_count"], pages, errors)


def _kind(file: IngestedFile) -> str:
    if file.media_type == PDF:
        return "pdf"
    if file.media_type in IMAGE_TYPES:
        return "image"
    raise InputError(
        ErrorCategory.NOT_A_DOCUMENT,
        f"{file.path.name!r} has media type {file.media_type!r}: not a PDF or image",
    )


def _fetch_info(
    file: IngestedFile,
    source: VerifiedSource,
    kind: str,
    settings: RasterSettings,
    password: str | None,
    deadline: float,
    workers: Workers,
) -> dict[str, Any]:
    """The document's page list from the worker: its "info" event, or the error it reports."""
    request = _request(
        source,
        kind,
        settings,
        password,
        workers.work_dir,
        op="info",
        renderer=settings.renderer,
        fallback=settings.fallback,
    )
    step_end = min(time.monotonic() + settings.render_timeout_s, deadline)
    info: dict[str, Any] | None = None
    try:
        # Read on to "done", so that the worker is free for the render steps.
        for event in workers.run(request, lambda: step_end):
            if event["event"] == "info":
                info = {k: event[k] for k in ("renderer", "page_count", "use_password", "pages")}
            elif event["event"] == "error":
                raise _document_error(file, event)
    except WorkerTimedOut as exc:
        raise InputError(
            ErrorCategory.RENDER_TIMEOUT,
            f"{file.path.name!r}: opening it took longer than render_timeout_s="
            f"{settings.render_timeout_s}; raise DOCEXTRACT_RASTER__RENDER_TIMEOUT_S "
            "if the file is legitimate",
        ) from exc
    except WorkerCrashed as exc:
        raise InputError(exc.category, f"{file.path.name!r}: opening it {exc}") from exc
    if info is not None:
        return info
    raise InputError(
        ErrorCategory.RENDER_CRASH,
        f"{file.path.name!r}: the render worker ended without describing the file",
    )


def _document_error(file: IngestedFile, event: dict[str, Any]) -> Exception:
    if event["category"] == "config_error":
        return ConfigError(event["message"])
    if event["category"] == CACHE:
        return InfrastructureError(event["message"])
    return InputError(ErrorCategory(event["category"]), f"{file.path.name!r}: {event['message']}")


def _check_page_count(file: IngestedFile, info: dict[str, Any], settings: RasterSettings) -> None:
    if info["page_count"] == 0:
        raise InputError(ErrorCategory.ZERO_PAGES, f"{file.path.name!r} has no pages")
    if info["page_count"] > settings.max_pages:
        raise InputError(
            ErrorCategory.TOO_LARGE,
            f"{file.path.name!r} has at least {info['page_count']} pages, more than "
            f"max_pages={settings.max_pages}; split it or raise "
            "DOCEXTRACT_RASTER__MAX_PAGES",
        )


def _request(
    source: VerifiedSource,
    kind: str,
    settings: RasterSettings,
    password: str | None,
    work_dir: Path,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "kind": kind,
        "path": source.path(),
        "password": password,
        "memory_mb": settings.render_memory_mb,
        "max_page_pixels": settings.max_page_pixels,
        "max_pages": settings.max_pages,
        "threads": settings.render_threads,
        "work_dir": str(work_dir),
        **extra,
    }


class _DocumentRender:
    """Runs the render steps of one document through its worker, collecting pages and page
    errors.

    After a timeout or crash the worker is gone: the step in progress is failed (PDF pages that
    the primary renderer failed go to the fallback, one page per step) and the steps after it go
    to a fresh worker. Retries go to the same worker when it is still alive.
    """

    def __init__(
        self,
        file: IngestedFile,
        source: VerifiedSource,
        kind: str,
        settings: RasterSettings,
        password: str | None,
        cache_dir: Path,
        info: dict[str, Any],
        deadline: float,
        on_page: Callable[[PageImage, int], None] | None = None,
    ) -> None:
        self.file, self.source, self.kind = file, source, kind
        self.settings, self.password = settings, password
        self.cache_dir, self.info, self.deadline = cache_dir, info, deadline
        self.on_page = on_page
        self.pages: list[PageImage] = []
        self.errors: list[ErrorItem] = []
        self._retries: list[Step] = []

    def run(self, steps: list[Step], workers: Workers) -> None:
        """Render until every page of `steps` is a page or an error. Each request consumes at
        least one step, and only steps of the primary renderer are retried (with the fallback),
        so this ends."""
        while steps:
            steps = self._run_request(steps, workers)

    def _path(self, number: int, dpi: int) -> Path:
        return page_cache_path(self.cache_dir, self.file.sha256, number, dpi)

    def _step_end(self) -> float:
        return min(time.monotonic() + self.settings.render_timeout_s, self.deadline)

    def _run_request(self, steps: list[Step], workers: Workers) -> list[Step]:
        """Run `steps` in one request; return the steps still to run."""
        request = _request(
            self.source,
            self.kind,
            self.settings,
            self.password,
            workers.work_dir,
            op="render",
            steps=[
                {
                    "renderer": s.renderer,
                    "dpi": s.dpi,
                    "pages": [[n, str(self._path(n, s.dpi))] for n in s.pages],
                }
                for s in steps
            ],
        )
        self._retries = []
        current, finished, step_end = 0, set(), [self._step_end()]
        try:
            for event in workers.run(request, lambda: step_end[0]):
                name = event["event"]
                if name == "done":
                    return self._retries
                if name == "error":
                    raise _document_error(self.file, event)
                if name == "step":
                    current, step_end[0] = event["index"], self._step_end()
                    continue
                finished.add(event["page"])
                if name == "page":
                    self._on_page(steps[current], event)
                else:
                    self._fail(
                        steps[current],
                        event["page"],
                        ErrorCategory(event["category"]),
                        event["message"],
                        event["retry"],
                    )
            category, why = ErrorCategory.RENDER_CRASH, "the render worker stopped early"
        except WorkerTimedOut as exc:
            if time.monotonic() >= self.deadline:
                raise InputError(
                    ErrorCategory.RENDER_TIMEOUT,
                    f"{self.file.path.name!r}: rendering took longer than "
                    f"document_timeout_s={self.settings.document_timeout_s}; raise "
                    "DOCEXTRACT_RASTER__DOCUMENT_TIMEOUT_S if it is legitimate",
                ) from exc
            category, why = (
                ErrorCategory.RENDER_TIMEOUT,
                (f"rendering took longer than render_timeout_s={self.settings.render_timeout_s}"),
            )
        except WorkerCrashed as exc:
            category, why = exc.category, f"rendering {exc}"
        for number in steps[current].pages:
            if number not in finished:
                self._fail(steps[current], number, category, why, retry=True)
        return self._retries + steps[current + 1 :]

    def _on_page(self, step: Step, event: dict[str, Any]) -> None:
        number, size = event["page"], (event["width"], event["height"])
        page = self.info["pages"][number - 1]
        expected = expected_size(page, step.dpi, self.info["renderer"])
        if expected and not size_matches(size, expected):
            # pdftoppm writes a 1x1 page when its bitmap cannot be allocated.
            self._path(number, step.dpi).unlink(missing_ok=True)
            self._fail(
                step,
                number,
                ErrorCategory.TOO_LARGE,
                f"the renderer produced {size[0]}x{size[1]} px instead of "
                f"{expected[0]}x{expected[1]}, as it does when out of memory; raise "
                "DOCEXTRACT_RASTER__RENDER_MEMORY_MB",
                retry=True,
            )
            return
        text = event.get("text")
        image = PageImage(
            number,
            self._path(number, step.dpi),
            *size,
            step.dpi,
            event["seconds"],
            page["rotate"],
            text=TextDirection(**text) if text else None,
        )
        self.pages.append(image)
        if self.on_page is not None:
            self.on_page(image, self.info["page_count"])

    def _fail(
        self, step: Step, number: int, category: ErrorCategory, why: str, retry: bool
    ) -> None:
        fallback = self.settings.fallback
        if retry and fallback is not None and step.renderer == self.settings.renderer:
            log.debug(
                "%s page %d: %s; retrying with %s", self.file.path.name, number, why, fallback
            )
            self._retries.append(Step(fallback, step.dpi, (number,)))
        else:
            self.errors.append(ErrorItem(category, f"page {number}: {why}", number))


def _nothing_rendered(file: IngestedFile, errors: list[ErrorItem]) -> InputError:
    category = Counter(e.category for e in errors).most_common(1)[0][0]
    first = next(e for e in errors if e.category == category)
    return InputError(category, f"{file.path.name!r}: no page could be rendered; {first.message}")


# The cache layout is part of what callers take from here (reruns, the review desk, tests).
__all__ = [
    "RasterResult",
    "cache_complete",
    "document_cache_dir",
    "fit_dpi",
    "page_cache_path",
    "rasterize",
]
