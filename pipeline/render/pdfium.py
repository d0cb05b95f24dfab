"""PDF pages with pdfium (pypdfium2), inside the render worker.

pdfium is a library in this process, not a program: it renders one page at a time on the
worker's main thread (pdfium is not thread-safe) while a pool of threads encodes the previous
pages to PNG (both release the GIL), at most `threads` pages in flight so memory stays flat.
Each bitmap is allocated at exactly `pixels_at(size, dpi)`, the size poppler gives and the parent
checks; pypdfium2's own `render(scale=dpi/72)` is 1 px larger at some DPIs (a Letter page at 44,
88, 194 DPI...) because `dpi/72` is rounded before it multiplies.
"""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.render.common import (
    CORRUPT,
    PASSWORD,
    TOO_LARGE,
    ZERO_PAGES,
    DocumentError,
    Emit,
    PageError,
    emit_page_error,
    oom,
    open_pdf,
    pixels_at,
    save_png,
)

if TYPE_CHECKING:
    from concurrent.futures import Future

_FPDF_ERR_PASSWORD = 4
Text = dict[str, Any] | None  # a page's text direction, as `textdirection` gives it


def describe(path: str, password: str | None, max_pages: int) -> dict[str, Any]:
    """`page_count`, `use_password` and `pages` ([{"w", "h", "rotate", "dpi"}], sizes in points:
    the crop box before /Rotate, as pdfinfo gives them) of the first `max_pages` pages. A page
    pdfium cannot load gets size 0 x 0 (the parent fails it as corrupt). `blank` is True when
    every page loaded and none draws anything (no page object, no annotation): how pdfium reads
    a page tree that poppler counts as 0 pages (`/Count 0` over a tree of nulls), and also a
    page whose only content stream cannot be decoded, so the caller asks poppler which it is.

    Raises DocumentError: password_required, corrupt, zero_pages.
    """
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    doc, use_password = _open(path, password)
    try:
        count = len(doc)
        if count == 0:
            raise DocumentError(ZERO_PAGES, "the PDF has no pages")
        pages: list[dict[str, Any]] = []
        draws = False
        for index in range(min(count, max_pages)):
            try:
                page = doc[index]
            except pdfium.PdfiumError:  # an unloadable page: size 0 fails it as a page later
                pages.append({"w": 0.0, "h": 0.0, "rotate": 0, "dpi": None})
                continue
            rotate = page.get_rotation() % 360
            w, h = page.get_size()  # after /Rotate: turn back to the page's own orientation
            if rotate in (90, 270):
                w, h = h, w
            pages.append({"w": w, "h": h, "rotate": rotate, "dpi": None})
            draws = draws or bool(
                pdfium_c.FPDFPage_CountObjects(page) or pdfium_c.FPDFPage_GetAnnotCount(page)
            )
            page.close()
        blank = count <= max_pages and all(p["w"] > 0 for p in pages) and not draws
        return {"page_count": count, "pages": pages, "use_password": use_password, "blank": blank}
    finally:
        doc.close()


def _open(path: str, password: str | None) -> tuple[Any, bool]:
    """The document and whether the password was needed (see `open_pdf`)."""
    return open_pdf(lambda given: _load(path, given), password)


def _load(path: str, password: str | None) -> Any:
    import pypdfium2 as pdfium

    try:
        doc = pdfium.PdfDocument(path, password=password)
    except pdfium.PdfiumError as exc:
        if exc.err_code == _FPDF_ERR_PASSWORD:
            raise DocumentError(
                PASSWORD,
                "the PDF is encrypted and needs its password to open; give the right one for "
                "this file",
            ) from exc
        raise DocumentError(CORRUPT, f"pdfium cannot open the PDF: {exc}") from exc
    doc.init_forms()  # before any page is loaded: form fields are drawn, as poppler does
    return doc


def render(req: dict[str, Any], step: dict[str, Any], emit: Emit) -> None:
    """The step's pages at its DPI (crop box, /Rotate applied), rendered one at a time and
    encoded to PNG on `threads` threads. Pages come out in order; a failure stays that page's."""
    # Imported here: concurrent.futures pulls in logging, 20 ms of every worker's start.
    from concurrent.futures import ThreadPoolExecutor

    try:
        doc = _load(req["path"], req["password"])
    except DocumentError as exc:
        error = PageError(exc.category, exc.message, retry=True)
        for number, _ in step["pages"]:
            emit_page_error(emit, number, error)
        return
    threads = min(req["threads"], len(step["pages"]))
    in_flight: deque[tuple[int, float, Text, Future[tuple[int, int]]]] = deque()
    try:
        with ThreadPoolExecutor(threads) as pool:
            for number, target in step["pages"]:
                started = time.monotonic()
                try:
                    image, text = _render(doc, number, step["dpi"])
                except PageError as exc:
                    emit_page_error(emit, number, exc)
                    continue
                except MemoryError:
                    emit_page_error(emit, number, PageError(TOO_LARGE, oom(req), retry=True))
                    continue
                encoded = pool.submit(_encode, image, Path(target))
                in_flight.append((number, started, text, encoded))
                del image  # the pool holds it until written
                while len(in_flight) > threads:
                    _finish(req, emit, *in_flight.popleft())
            while in_flight:
                _finish(req, emit, *in_flight.popleft())
    finally:
        doc.close()


def _render(doc: Any, number: int, dpi: int) -> tuple[Any, Text]:
    """Page `number` (1-based) as an RGB Pillow image of exactly `pixels_at` its size, and
    the direction of its text as rendered (`textdirection`)."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    from pipeline.render.textdirection import text_direction

    try:
        page = doc[number - 1]
    except pdfium.PdfiumError as exc:
        raise PageError(CORRUPT, f"pdfium cannot load the page: {exc}", retry=True) from exc
    try:
        width_pt, height_pt = page.get_size()  # after /Rotate, as the bitmap is laid out
        width, height = pixels_at(width_pt, dpi), pixels_at(height_pt, dpi)
        if width < 1 or height < 1:
            raise PageError(CORRUPT, f"the page is {width_pt} x {height_pt} pt", retry=True)
        # BGR with pdfium's byte order reversed is RGB: Pillow takes it as is.
        bitmap = pdfium.PdfBitmap.new_native(
            width, height, pdfium_c.FPDFBitmap_BGR, rev_byteorder=True
        )
        bitmap.fill_rect((255, 255, 255, 255), 0, 0, width, height)
        flags = pdfium_c.FPDF_ANNOT | pdfium_c.FPDF_REVERSE_BYTE_ORDER
        pdfium_c.FPDF_RenderPageBitmap(bitmap, page, 0, 0, width, height, 0, flags)
        if page.formenv:
            pdfium_c.FPDF_FFLDraw(page.formenv, bitmap, page, 0, 0, width, height, 0, flags)
        return bitmap.to_pil(), text_direction(page)  # a copy: the bitmap can go
    finally:
        page.close()


def _encode(image: Any, target: Path) -> tuple[int, int]:
    save_png(image, target)
    return image.size  # type: ignore[no-any-return]


def _finish(
    req: dict[str, Any],
    emit: Emit,
    number: int,
    started: float,
    text: Text,
    encoded: Future[tuple[int, int]],
) -> None:
    try:
        width, height = encoded.result()
    except MemoryError:
        emit_page_error(emit, number, PageError(TOO_LARGE, oom(req), retry=True))
        return
    seconds = round(time.monotonic() - started, 4)
    emit("page", page=number, width=width, height=height, seconds=seconds, text=text)
