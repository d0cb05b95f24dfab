"""Page images for the desk: from the page cache, rendered again when the cache is gone.

A page is asked for by document and 1-based page number only; the file path is computed here
from the document's sha256 and the page's DPI, never taken from a request.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import ConfigError, InputError
from pipeline.ingest import hash_file, ingest_file
from pipeline.render.raster import page_cache_path, rasterize
from pipeline.settings import Settings
from pipeline.store.models import Document, Extraction
from pipeline.store.queries import last_seen_paths

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PageRef:
    """A page of an extraction's document: `dpi` is the one its evidence boxes are in."""

    number: int
    dpi: int
    width: int | None
    height: int | None


def page_refs(extraction: Extraction, settings: Settings) -> list[PageRef]:
    """The document's pages, 1-based, with the DPI of each (the recorded page rows; else the
    DPI in the extraction's provenance; else the configured one)."""
    document = extraction.document
    rows = {p.number: p for p in document.pages}
    fallback = int((extraction.provenance or {}).get("dpi") or settings.raster.dpi)
    if document.first_page is not None and document.last_page is not None:  # a bundle's part
        numbers = range(document.first_page, document.last_page + 1)  # the file's page numbers
    else:
        numbers = range(1, max([document.page_count or 0, extraction.pages_total or 0, *rows]) + 1)
    return [
        PageRef(n, rows[n].dpi, rows[n].width, rows[n].height)
        if n in rows
        else PageRef(n, fallback, None, None)
        for n in numbers
    ]


@dataclass(frozen=True)
class PageFile:
    path: Path
    dpi: int  # the DPI it was rendered at (boxes scale by dpi / PageRef.dpi)


def page_file(document: Document, page: PageRef, settings: Settings) -> PageFile | None:
    """The cached PNG of `page`, rendered again from the document's file when the cache lost it;
    None when neither is possible (the file moved away, or the page does not render). A bundle's
    child document reads its file's pages."""
    document = document.parent or document
    cached = page_cache_path(settings.page_cache_dir, document.sha256, page.number, page.dpi)
    if cached.is_file():
        return PageFile(cached, page.dpi)
    source = source_file(document)
    if source is None:
        return None
    try:
        result = rasterize(
            ingest_file(source, settings.raster), settings.raster, settings.page_cache_dir
        )
    except (InputError, ConfigError) as exc:
        log.warning("cannot render %s again: %s", document.sha256[:12], exc)
        return None
    rendered = [p for p in result.pages if p.number == page.number]
    return PageFile(rendered[0].path, rendered[0].dpi) if rendered else None


def source_file(document: Document) -> Path | None:
    """A recorded path that still holds the document's bytes (most recently seen first)."""
    for text in last_seen_paths(document):
        path = Path(text)
        try:
            if path.is_file() and hash_file(path)[0] == document.sha256:
                return path
        except InputError:  # unreadable now: try the next one
            continue
    return None
