"""The pages stage over a whole document: every rendered page through `prepare_page`, as the
pages stream in (`preparing`) or after the fact (`prepare_raster`), and what the document's
provenance keeps of it. A page the stage cannot read or write becomes that page's error item:
no page is lost."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from pipeline.pages.prepare import prepare_page
from pipeline.render.raster import RasterResult
from pipeline.settings import PagesSettings
from pipeline.types import ErrorCategory, ErrorItem, PageImage

log = logging.getLogger(__name__)

OnPage = Callable[[PageImage, int], None]


class Preparing:
    """An `on_page` callback for `rasterize` that prepares each page before handing it on, and
    the pages it prepared (or failed to), for `finish`."""

    def __init__(self, settings: PagesSettings, on_page: OnPage | None = None) -> None:
        self.settings, self.on_page = settings, on_page
        self.done: dict[int, PageImage | ErrorItem] = {}

    def __call__(self, page: PageImage, page_count: int) -> None:
        done = self._prepare(page)
        if isinstance(done, PageImage) and self.on_page is not None:
            self.on_page(done, page_count)

    def _prepare(self, page: PageImage) -> PageImage | ErrorItem:
        if page.number not in self.done:
            try:
                self.done[page.number] = prepare_page(page, self.settings)
            except OSError as exc:
                log.warning("page %d of %s: %s", page.number, page.path.parent.name[:12], exc)
                message = f"page {page.number}: the rendered page could not be read: {exc}"
                self.done[page.number] = ErrorItem(ErrorCategory.IO_ERROR, message, page.number)
        return self.done[page.number]

    def finish(self, raster: RasterResult) -> RasterResult:
        """`raster` with its pages prepared; a page the stage failed on is an error item."""
        pages: list[PageImage] = []
        errors = list(raster.errors)
        for page in raster.pages:
            done = self._prepare(page)
            if isinstance(done, PageImage):
                pages.append(done)
            else:
                errors.append(done)
        errors.sort(key=lambda e: e.page or 0)
        return replace(raster, pages=pages, errors=errors)


def preparing(settings: PagesSettings, on_page: OnPage | None = None) -> Preparing:
    """The callback to pass to `rasterize(on_page=...)`; call `.finish(result)` on its result."""
    return Preparing(settings, on_page)


def prepare_raster(raster: RasterResult, settings: PagesSettings) -> RasterResult:
    """A finished rendering with every page prepared (for callers that do not stream)."""
    return Preparing(settings).finish(raster)


def blank_pages(pages: Sequence[PageImage]) -> list[int]:
    """Numbers (1-based) of the pages found blank."""
    return [p.number for p in pages if p.blank]


def all_blank_error(pages: Sequence[PageImage]) -> ErrorItem:
    """The document's failure when every page that rendered is blank."""
    numbers = blank_pages(pages)
    listed = ", ".join(map(str, numbers[:10])) + (" ..." if len(numbers) > 10 else "")
    return ErrorItem(
        ErrorCategory.BLANK,
        f"every page is blank (page {listed}): nothing to extract; if a page does hold "
        "content, raise DOCEXTRACT_PAGES__BLANK_MAX_CONTENT_MM2 or set DOCEXTRACT_PAGES__BLANK="
        "false and rerun",
    )


def pages_provenance(pages: Sequence[PageImage]) -> dict[str, Any] | None:
    """What the provenance keeps: the blank pages, and each page turned or straightened (with
    the method and its confidence). None when the stage did nothing worth recording."""
    turned = [
        {
            "page": p.number,
            "turned": p.facts.turned,
            "by": p.facts.by,
            "confidence": p.facts.confidence,
            "skew": p.facts.skew,
        }
        for p in pages
        if p.facts is not None and (p.facts.turned or p.facts.skew)
    ]
    unsure = [p.number for p in pages if p.facts is not None and p.facts.by == "none"]
    found: dict[str, Any] = {}
    if blank := blank_pages(pages):
        found["blank"] = blank
    if turned:
        found["upright"] = turned
    if unsure:
        found["orientation_unsure"] = unsure
    return found or None
