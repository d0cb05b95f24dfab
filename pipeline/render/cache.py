"""The page cache: where a document's pages live, what of it is usable, and what is left to
render.

Layout, keyed by content only: `cache_dir/sha[:2]/sha/p0001-200dpi.png`, plus `info.json`
(page count, page sizes, the renderer that described the file) so that a fully cached document
starts no subprocess. Pages are the same whichever renderer drew them: switching renderers keeps
the cache. `plan` says, for a described document, which pages are cached, which cannot be
rendered at all, and in which chunks to render the rest.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from pipeline.errors import InfrastructureError
from pipeline.ingest import IngestedFile
from pipeline.render.common import DocumentError, cache_writes, pixels_at
from pipeline.settings import RasterSettings
from pipeline.types import ErrorCategory, ErrorItem, PageImage

_SHA256 = re.compile(r"[0-9a-f]{64}")


INFO_FILE = "info.json"


@dataclass(frozen=True)
class Step:
    renderer: str  # "poppler", "pdfium" or "pillow"
    dpi: int
    pages: tuple[int, ...]  # contiguous, 1-based


def document_cache_dir(cache_dir: Path, sha256: str) -> Path:
    """`cache_dir/sha[:2]/sha`. Raises ValueError unless `sha256` is 64 lowercase hex digits."""
    if not _SHA256.fullmatch(sha256):
        raise ValueError(f"not a sha256 hex digest: {sha256!r}")
    return Path(cache_dir) / sha256[:2] / sha256


def page_cache_path(cache_dir: Path, sha256: str, page: int, dpi: int) -> Path:
    """Where page `page` (1-based) of the document `sha256` rendered at `dpi` is cached."""
    return document_cache_dir(cache_dir, sha256) / f"p{page:04d}-{dpi}dpi.png"


def fit_dpi(width_pt: float, height_pt: float, dpi: int, max_pixels: int) -> int | None:
    """The largest DPI <= `dpi` at which a page of this size (points) has <= `max_pixels` pixels.

    Sizes round up as in poppler (`pixels_at`). Returns None when not even 1 DPI fits.
    """

    def pixels(d: int) -> int:
        return pixels_at(width_pt, d) * pixels_at(height_pt, d)

    if pixels(dpi) <= max_pixels:
        return dpi
    d = min(dpi, int(72 * math.sqrt(max_pixels / (width_pt * height_pt))))
    while d >= 1 and pixels(d) > max_pixels:
        d -= 1
    return d if d >= 1 else None


def cache_complete(file: IngestedFile, settings: RasterSettings, cache_dir: Path) -> bool:
    """True when every page of `file` is cached as `rasterize` would render it now (same DPI
    fitting, same validity checks), so extraction needs no source file."""
    info = cached_info(document_cache_dir(cache_dir, file.sha256), settings)
    if info is None:
        return False
    _pages, _errors, steps = plan(file, info, settings, cache_dir)
    return not steps


def cached_info(doc_dir: Path, settings: RasterSettings) -> dict[str, Any] | None:
    try:
        info = json.loads((doc_dir / INFO_FILE).read_text())
        complete = len(info["pages"]) >= min(info["page_count"], settings.max_pages)
    except (OSError, ValueError, KeyError, TypeError):  # absent or unreadable: describe again
        return None
    if info.get("renderer") not in ("pillow", settings.renderer, settings.fallback):
        return None  # described by a renderer no longer allowed: describe again
    return info if complete else None


def plan(
    file: IngestedFile, info: dict[str, Any], settings: RasterSettings, cache_dir: Path
) -> tuple[list[PageImage], list[ErrorItem], list[Step]]:
    """Cached pages, pages that cannot be rendered at all, and chunks for the rest."""
    pages: list[PageImage] = []
    errors: list[ErrorItem] = []
    todo: list[tuple[int, int]] = []  # (page, dpi)
    for number, page in enumerate(info["pages"], start=1):
        dpi, error = _page_dpi(page, info["renderer"], settings)
        if error is not None:
            errors.append(ErrorItem(error[0], f"page {number}: {error[1]}", number))
            continue
        assert dpi is not None
        path = page_cache_path(cache_dir, file.sha256, number, dpi)
        size = _cached_size(path)
        if size is None:
            todo.append((number, dpi))
        else:
            pages.append(PageImage(number, path, *size, dpi, 0.0, page["rotate"]))
    steps: list[Step] = []
    for number, dpi in todo:
        last = steps[-1] if steps else None
        # The first page to render goes alone: poppler hands over a chunk when all of it is
        # done, and the model should not wait for four pages to start on the first.
        chunk = 1 if len(steps) == 1 else settings.chunk_pages
        if last and last.dpi == dpi and last.pages[-1] == number - 1 and len(last.pages) < chunk:
            steps[-1] = Step(last.renderer, dpi, (*last.pages, number))
        else:
            steps.append(Step(info["renderer"], dpi, (number,)))
    return pages, errors, steps


def _cached_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of a cached page, or None to render it (again)."""
    try:
        with Image.open(path) as im:  # our own PNG: only the header is read
            return im.size
    except FileNotFoundError:
        return None
    except OSError:  # damaged on disk: render it again
        path.unlink(missing_ok=True)
        return None


def _page_dpi(
    page: dict[str, Any], renderer: str, settings: RasterSettings
) -> tuple[int | None, tuple[ErrorCategory, str] | None]:
    width, height, cap = page["w"], page["h"], settings.max_page_pixels
    if width < 1 or height < 1:
        return None, (ErrorCategory.CORRUPT, f"the page is empty or unreadable ({width}x{height})")
    if renderer == "pillow":
        if width * height > cap:
            return None, (
                ErrorCategory.TOO_LARGE,
                f"{width}x{height} px is above "
                f"max_page_pixels={cap}; raise DOCEXTRACT_RASTER__MAX_PAGE_PIXELS",
            )
        return page["dpi"] or settings.dpi, None
    dpi = fit_dpi(width, height, settings.dpi, cap)
    if dpi is None:
        return None, (
            ErrorCategory.TOO_LARGE,
            f"{width} x {height} pt does not fit max_page_pixels={cap} even at 1 DPI",
        )
    return dpi, None


def expected_size(page: dict[str, Any], dpi: int, renderer: str) -> tuple[int, int] | None:
    """Pixel size of a PDF page at `dpi`, either orientation; None for images (kept as is)."""
    if renderer == "pillow":
        return None
    return pixels_at(page["w"], dpi), pixels_at(page["h"], dpi)


def size_matches(size: tuple[int, int], expected: tuple[int, int]) -> bool:
    """Either orientation, within 1 px: pdfinfo prints sizes to 6 significant digits and pdfium
    reads them as 32-bit floats, so a page drawn by the renderer that did not describe the file
    can round the other way. The check is for poppler's 1x1 stand-in of a page it ran out of
    memory on, which no tolerance hides."""
    return all(abs(a - b) <= 1 for a, b in zip(sorted(size), sorted(expected), strict=True))


def write_json(path: Path, data: dict[str, Any]) -> None:
    # one temporary name per writer (process and thread): two writers must not share one
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with cache_writes(path.parent):
            tmp.write_text(json.dumps(data))
            os.replace(tmp, path)  # readers never see half a file
    except DocumentError as exc:
        tmp.unlink(missing_ok=True)
        raise InfrastructureError(exc.message) from exc
