"""The sandboxed render subprocess: `python -m pipeline.render.worker`.

Untrusted files are opened only here, never in the batch process: a renderer that crashes,
allocates without bound or loops forever takes down this process alone, which the parent
(`pipeline.render.raster`) kills on a wall-clock deadline. The address-space cap (`RLIMIT_AS`) is
set before any renderer is imported and is inherited by poppler's `pdfinfo`/`pdftoppm`. Renderers
and Pillow are imported only when a request needs them, so the process starts in ~40 ms.

Protocol: JSON requests on stdin, one per line, handled in turn until stdin closes (the parent
sends a document's 'info' request, then its 'render' request); JSON lines on stdout, one event
each, each request's ending with "done":
  {"event": "info", "renderer", "page_count", "use_password", "pages": [{"w","h","rotate","dpi"}]}
  {"event": "step", "index"}                     a chunk starts (the parent's deadline restarts)
  {"event": "page", "page", "width", "height", "seconds"}
  {"event": "page_error", "page", "category", "message", "retry"}
  {"event": "error", "category", "message"}      the whole document failed
  {"event": "done"}
A "words" request reads rendered pages' words (text layer, OCR): `pipeline.render.reading`.
Page numbers are 1-based; PDF sizes are in points (crop box before /Rotate), image sizes in
pixels; categories are `ErrorCategory` values. An "info" request names the primary PDF
`renderer` and the `fallback` (or null); each "render" step names its renderer. Pages are written
to the target paths the parent chose (from the sha256 only), as tmp + rename.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import resource
import struct
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.render.common import (
    CONFIG,
    CORRUPT,
    PASSWORD,
    TOO_LARGE,
    UNSUPPORTED,
    ZERO_PAGES,
    DocumentError,
    Emit,
    PageError,
    each_page,
    oom,
    save_png,
)

# What Pillow raises on damaged or fuzzed input (UnidentifiedImageError is an OSError).
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError)
_EXIF_ROTATION = {3: 180, 4: 180, 5: 90, 6: 90, 7: 270, 8: 270}  # clockwise, as PDF /Rotate
_WIDE_GREY = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
# Each module has `describe(path, password, max_pages)` and `render(req, step, emit)`; it is
# imported when a request names it, so that a worker loads one renderer's code, not both.
_PDF_RENDERERS = {"poppler": "pipeline.render.poppler", "pdfium": "pipeline.render.pdfium"}
# When both renderers fail to open a file, the more telling reason is the document's.
_TELLING = (CONFIG, PASSWORD, ZERO_PAGES)


# ---------------------------------------------------------------- PDF: primary, then fallback


def pdf_info(req: dict[str, Any], emit: Emit) -> None:
    """Page count, sizes (pt) and /Rotate from the primary renderer; from the fallback if the
    primary cannot open the file (corrupt, or the password refused). When pdfium finds only
    pages that draw nothing, the fallback says whether the file has pages at all: poppler counts
    0 in a page tree that pdfium reads as empty pages (qpdf-many-nulls.pdf), and such a file must
    end zero_pages, not as a blank page sent to the model."""
    primary, fallback = req["renderer"], req["fallback"]
    args = (req["path"], req["password"], req["max_pages"])
    try:
        described, renderer = _pdf_renderer(primary).describe(*args), primary
    except DocumentError as exc:
        if fallback is None or exc.category not in (CORRUPT, PASSWORD):
            raise
        try:
            described, renderer = _pdf_renderer(fallback).describe(*args), fallback
        except DocumentError as second:
            raise _both_failed(exc, second) from second
    if described.pop("blank", False) and renderer == primary and fallback is not None:
        _unless_no_pages(_pdf_renderer(fallback).describe, args)
    emit("info", renderer=renderer, **described)


def _unless_no_pages(
    describe: Callable[[str, str | None, int], dict[str, Any]], args: tuple[Any, ...]
) -> None:
    """Raise zero_pages if `describe` finds no pages; any other verdict leaves the caller's."""
    try:
        describe(*args)
    except DocumentError as exc:
        if exc.category == ZERO_PAGES:
            raise
        # A fallback that cannot open the file says nothing about its pages: keep the primary's.


def _pdf_renderer(name: str) -> Any:
    """The module of PDF renderer `name` (imported on first use)."""
    return importlib.import_module(_PDF_RENDERERS[name])


def _both_failed(first: DocumentError, second: DocumentError) -> DocumentError:
    for category in _TELLING:
        for exc in (first, second):
            if exc.category == category:
                return exc
    return DocumentError(first.category, f"{first.message}; {second.message}")


# ---------------------------------------------------------------- images: Pillow


def _open_image(path: str, max_pixels: int) -> Any:
    from PIL import Image, ImageFile

    ImageFile.LOAD_TRUNCATED_IMAGES = False  # a cut-off scan fails as corrupt, never half grey
    Image.MAX_IMAGE_PIXELS = max_pixels  # Pillow's bomb guard at our cap: refused before decoding
    warnings.simplefilter("error", Image.DecompressionBombWarning)
    try:
        return Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        pixels = re.search(r"\((\d+) pixels\)", str(exc))
        raise DocumentError(
            TOO_LARGE,
            f"the image has {pixels[1] if pixels else 'too many'} "
            f"pixels, above max_page_pixels={max_pixels} (refused before "
            "decoding); raise DOCEXTRACT_RASTER__MAX_PAGE_PIXELS",
        ) from exc
    except DECODE_ERRORS as exc:
        raise DocumentError(CORRUPT, f"its header says image but it cannot be read: {exc}") from exc


def _frame_count(im: Any, limit: int) -> int:
    """Frames of a TIFF are pages; other formats (GIF/WebP animation, MPO) give their first."""
    if im.format != "TIFF":
        return 1
    count = 0
    while count < limit:
        try:
            im.seek(count)
        except EOFError:
            break
        except DECODE_ERRORS:
            return count + 1  # a broken frame still counts: it fails later as a page error
        count += 1
    return count


def _frame_info(im: Any) -> dict[str, Any]:
    try:
        rotate = _EXIF_ROTATION.get(im.getexif().get(0x0112, 1), 0)
    except DECODE_ERRORS:  # a broken EXIF block: keep the image as stored
        rotate = 0
    dpi = im.info.get("dpi")
    valid = isinstance(dpi, tuple) and isinstance(dpi[0], int | float) and 1 <= dpi[0] <= 4800
    return {
        "w": im.width,
        "h": im.height,
        "rotate": rotate,
        "dpi": round(dpi[0]) if valid else None,
    }


def image_info(req: dict[str, Any], emit: Emit) -> None:
    """Frames (pages) with their pixel sizes, EXIF rotation and declared DPI."""
    with _open_image(req["path"], req["max_page_pixels"]) as im:
        count = _frame_count(im, req["max_pages"] + 1)
        pages = []
        for index in range(min(count, req["max_pages"])):
            try:
                im.seek(index)
                pages.append(_frame_info(im))
            except DECODE_ERRORS:
                pages.append({"w": 0, "h": 0, "rotate": 0, "dpi": None})
    emit("info", renderer="pillow", use_password=False, page_count=count, pages=pages)


def render_image(req: dict[str, Any], step: dict[str, Any], emit: Emit) -> None:
    """Each frame decoded, EXIF orientation applied, flattened to 8-bit RGB on white."""
    from PIL import Image, ImageOps

    with _open_image(req["path"], req["max_page_pixels"]) as im:

        def convert(number: int, target: Path) -> None:
            try:
                im.seek(number - 1)
                if im.width * im.height > req["max_page_pixels"]:  # Pillow checks frame 1 only
                    raise PageError(
                        TOO_LARGE,
                        f"{im.width}x{im.height} px is above "
                        f"max_page_pixels={req['max_page_pixels']}",
                    )
                im.load()
                image = ImageOps.exif_transpose(im)
            except DECODE_ERRORS as exc:
                raise PageError(CORRUPT, f"the image cannot be decoded: {exc}") from exc
            if image.mode in _WIDE_GREY:
                image = _to_8bit(image)
            try:
                if image.mode in ("RGBa", "La"):  # premultiplied alpha
                    image = image.convert("RGBA")
                if "A" in image.mode or "transparency" in image.info:
                    rgba = image.convert("RGBA")
                    image = Image.alpha_composite(
                        Image.new("RGBA", rgba.size, _backdrop(rgba)), rgba
                    )
                save_png(image.convert("RGB"), target)
            except ValueError as exc:
                raise PageError(UNSUPPORTED, f"mode {image.mode!r} cannot become RGB") from exc

        each_page(req, step, emit, convert)


def _backdrop(rgba: Any) -> str:
    """White, unless what is drawn on a mostly transparent sheet is near white (white text):
    then black. Dropping alpha loses dark text, flattening on white loses white text; either way
    the content must stay visible."""
    from PIL import ImageChops, ImageStat

    alpha = rgba.getchannel("A")
    drawn = ImageStat.Stat(alpha).sum[0]  # alpha-weighted pixel count, x255
    if drawn == 0 or drawn > 0.5 * 255 * rgba.width * rgba.height:
        return "white"
    lightness = ImageStat.Stat(ImageChops.multiply(rgba.convert("L"), alpha)).sum[0] * 255 / drawn
    return "black" if lightness > 224 else "white"


def _to_8bit(image: Any) -> Any:
    """Scale 16/32-bit grey to 8 bits by its bit depth, not by clipping at 255.

    Scanners store 10-, 12- or 14-bit samples in 16-bit containers, so the depth is the smallest
    that holds the brightest sample; clipping would turn everything above 255 white.
    """
    grey = image if image.mode == "F" else image.convert("I")
    high = max(grey.getextrema()[1], 1)
    depth = next((bits for bits in (8, 10, 12, 14, 16) if high < 2**bits), 32)
    return grey.point(lambda value: value * (255 / (2**depth - 1))).convert("L")


# ---------------------------------------------------------------- plumbing


def handle(req: dict[str, Any], emit: Emit) -> None:
    """Run one request; document-level failures become an "error" event."""
    try:
        if req["op"] == "info":
            (pdf_info if req["kind"] == "pdf" else image_info)(req, emit)
            return
        if req["op"] == "words":  # the pages' words, beside rendering (pipeline.render.words)
            importlib.import_module("pipeline.render.reading").read_words(req, emit)
            return
        for index, step in enumerate(req["steps"]):
            emit("step", index=index)
            if step["renderer"] == "pillow":
                render_image(req, step, emit)
            else:
                _pdf_renderer(step["renderer"]).render(req, step, emit)
    except DocumentError as exc:
        emit("error", category=exc.category, message=exc.message)
    except MemoryError:
        emit("error", category=TOO_LARGE, message=oom(req))


def main() -> int:
    # Keep the real stdout for the protocol; anything a library prints goes to stderr instead.
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def emit(event: str, **fields: Any) -> None:
        protocol.write(json.dumps({"event": event, **fields}) + "\n")

    for line in sys.stdin:
        req = json.loads(line)
        limit = req["memory_mb"] * 1024 * 1024
        # Before any renderer is imported; inherited by pdfinfo and pdftoppm. The requests of a
        # document share the limit (a hard limit can only be lowered).
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        handle(req, emit)
        emit("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
