"""What the render worker's modules share: error types, categories, the page loop, PNG writing.

Used inside the sandboxed subprocess (`pipeline.render.worker`, `render_poppler`,
`render_pdfium`); `pixels_at` is also the parent's rule for page sizes. Nothing here imports a
renderer or Pillow at module level, so the child starts fast and the parent stays light.
"""

from __future__ import annotations

import errno
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

Emit = Callable[..., None]
T = TypeVar("T")
CORRUPT, TOO_LARGE, PASSWORD = "corrupt", "too_large", "password_required"
ZERO_PAGES, UNSUPPORTED, CONFIG = "zero_pages", "unsupported_type", "config_error"
CACHE = "cache_error"  # the page cache cannot be written: the machine's fault, not the file's
_CACHE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})
# zlib level 6: text pages come out 3x smaller than at level 1 for ~20 ms more per page.
_PNG_COMPRESS_LEVEL = 6


class DocumentError(Exception):
    """The whole document cannot be opened; `category` is an `ErrorCategory` value."""

    def __init__(self, category: str, message: str) -> None:
        super().__init__(message)
        self.category = category
        self.message = message


class PageError(DocumentError):
    """One page cannot be produced; `retry` asks the parent to try the fallback renderer."""

    def __init__(self, category: str, message: str, retry: bool = False) -> None:
        super().__init__(category, message)
        self.retry = retry


def pixels_at(points: float, dpi: int) -> int:
    """Pixels that `points` (1/72 inch) span at `dpi`, rounded up as pdftoppm does.

    Both renderers produce exactly this (pdfium is told the bitmap size), and the parent checks
    the pages against it.
    """
    return math.ceil(points * dpi / 72)


def each_page(
    req: dict[str, Any],
    step: dict[str, Any],
    emit: Emit,
    produce: Callable[[int, Path], None],
    seconds: float | None = None,
    texts: dict[int, Any] | None = None,
) -> None:
    """Call `produce(number, target)` for each page of the step; a failure stays that page's.

    Emits "page" (size read back from the PNG written; `text`: the page's entry in `texts`,
    the direction of its text) or "page_error"; `seconds` overrides the per-page time (a
    chunk's average).
    """
    from PIL import Image

    for number, target in step["pages"]:
        started = time.monotonic()
        try:
            produce(number, Path(target))
        except PageError as exc:
            emit_page_error(emit, number, exc)
            continue
        except MemoryError:
            emit("page_error", page=number, category=TOO_LARGE, message=oom(req), retry=True)
            continue
        with Image.open(target) as im:  # our own PNG: only the header is read
            width, height = im.size
        took = seconds if seconds is not None else time.monotonic() - started
        text = (texts or {}).get(number)
        emit("page", page=number, width=width, height=height, seconds=round(took, 4), text=text)


def open_pdf(open_: Callable[[str | None], T], password: str | None) -> tuple[T, bool]:
    """`open_(password)`, and whether the password was needed. A password given for a file with
    an owner password only makes both renderers refuse it; such a file opens for anyone, so it
    is tried once without."""
    try:
        return open_(password), password is not None
    except DocumentError as exc:
        if exc.category != PASSWORD or password is None:
            raise
        try:
            return open_(None), False
        except DocumentError:
            raise DocumentError(
                PASSWORD,
                "the PDF is encrypted and the password given does not open it; check the "
                "password for this file",
            ) from exc


def emit_page_error(emit: Emit, number: int, exc: PageError) -> None:
    """The "page_error" event for page `number` (1-based)."""
    emit("page_error", page=number, category=exc.category, message=exc.message, retry=exc.retry)


def save_png(image: Any, target: Path) -> None:
    """Write a Pillow image to `target` as PNG, through a tmp file named with this pid (the
    parent removes it if it kills us) and a rename, so readers never see half a PNG.

    An RGB page without colour (R = G = B everywhere, as black print on white is) is stored as
    8-bit grey: the same pixels once read back as RGB, with a third of the bytes to compress and
    to decode (an A4 text page at 200 DPI here: 40 instead of 99 ms to encode, 14 instead of
    44 ms to read back, half the file; the check costs 6 ms).
    """
    if image.mode == "RGB" and _is_grey(image):
        image = image.convert("L")  # exact: Pillow's weights sum to 1 in fixed point
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with cache_writes(target.parent):
            image.save(tmp, format="PNG", compress_level=_PNG_COMPRESS_LEVEL)
            os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def cache_writes(folder: Path | str) -> Iterator[None]:
    """Turn a write into the page cache that fails for lack of space or permission (ENOSPC,
    EDQUOT, EROFS, EACCES, EPERM) into a `DocumentError(CACHE)`: the parent stops the run for it
    instead of recording the document as broken. Other errors pass unchanged."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in _CACHE_ERRNOS:
            raise
        raise DocumentError(
            CACHE,
            f"cannot write the page cache at {str(folder)!r}: {exc.strerror}; free space or "
            "point DOCEXTRACT_CACHE_DIR at a writable disk, then run again",
        ) from exc


def _is_grey(image: Any) -> bool:
    from PIL import ImageChops

    red, green, blue = image.split()
    return bool(
        ImageChops.difference(red, green).getbbox() is None
        and ImageChops.difference(red, blue).getbbox() is None
    )


def oom(req: dict[str, Any]) -> str:
    """The message for a page or document that ran out of the worker's address space."""
    return (
        f"rendering needs more memory than render_memory_mb={req['memory_mb']}; raise "
        "DOCEXTRACT_RASTER__RENDER_MEMORY_MB or lower the DPI"
    )
