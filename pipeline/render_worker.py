"""The sandboxed render subprocess: `python -m pipeline.render_worker`.

Untrusted files are opened only here, never in the batch process: a renderer that crashes,
allocates without bound or loops forever takes down this process alone, which the parent
(`pipeline.raster`) kills on a wall-clock deadline. The address-space cap (`RLIMIT_AS`) is set
before any renderer is imported and is inherited by poppler's `pdfinfo`/`pdftoppm`.

Protocol: one JSON request on stdin; JSON lines on stdout, one event each:
  {"event": "info", "renderer", "page_count", "use_password", "pages": [{"w","h","rotate","dpi"}]}
  {"event": "step", "index"}                     a chunk starts (the parent's deadline restarts)
  {"event": "page", "page", "width", "height", "seconds"}
  {"event": "page_error", "page", "category", "message", "retry"}
  {"event": "error", "category", "message"}      the whole document failed
  {"event": "done"}
Page numbers are 1-based; PDF sizes are in points, image sizes in pixels; categories are
`ErrorCategory` values. Pages are written to the target paths the parent chose (from the sha256
only), as tmp + rename.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import struct
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

Emit = Callable[..., None]
CORRUPT, TOO_LARGE, PASSWORD = "corrupt", "too_large", "password_required"
ZERO_PAGES, UNSUPPORTED, CONFIG = "zero_pages", "unsupported_type", "config_error"
# zlib level 6: text pages come out 3x smaller than at level 1 for ~20 ms more per page.
_PNG_COMPRESS_LEVEL = 6
# What Pillow raises on damaged or fuzzed input (UnidentifiedImageError is an OSError).
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError)
_EXIF_ROTATION = {3: 180, 4: 180, 5: 90, 6: 90, 7: 270, 8: 270}  # clockwise, as PDF /Rotate
_WIDE_GREY = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


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


# ---------------------------------------------------------------- PDF: poppler, pdfium fallback


def pdf_info(req: dict[str, Any], emit: Emit) -> None:
    """Page count, sizes (pt) and /Rotate; poppler first, pdfium only if poppler cannot open it."""
    path, password, max_pages = req["path"], req["password"], req["max_pages"]
    renderer, use_password = "poppler", password is not None
    try:
        pages = _poppler_info(path, password, max_pages)
    except DocumentError as exc:
        if exc.category == PASSWORD and password is not None:
            # A password given for an owner-password-only file makes poppler refuse it; such a
            # file opens for anyone, so try once without.
            try:
                pages, use_password = _poppler_info(path, None, max_pages), False
            except DocumentError:
                raise DocumentError(
                    PASSWORD,
                    "the PDF is encrypted and the password given does "
                    "not open it; check the password for this file",
                ) from exc
        elif exc.category == CORRUPT and req["fallback"] == "pdfium":
            pages, renderer = _pdfium_info(path, password, max_pages, exc), "pdfium"
        else:
            raise
    emit("info", renderer=renderer, use_password=use_password, **pages)


def _poppler_info(path: str, password: str | None, max_pages: int) -> dict[str, Any]:
    from pdf2image import pdfinfo_from_path
    from pdf2image.exceptions import PDFInfoNotInstalledError, PDFPageCountError

    try:
        info = pdfinfo_from_path(
            path,
            userpw=password,  # type: ignore[arg-type]
            ownerpw=password,  # type: ignore[arg-type]
            first_page=1,
            last_page=max_pages,
        )  # (its hints omit None)
    except PDFInfoNotInstalledError as exc:
        raise DocumentError(CONFIG, "poppler is not installed: apt install poppler-utils") from exc
    except PDFPageCountError as exc:
        raise _classify_poppler(str(exc)) from exc
    count = int(info["Pages"])
    if count == 0:
        raise DocumentError(ZERO_PAGES, "the PDF has no pages")
    pages = []
    for n in range(1, min(count, max_pages) + 1):
        size = re.match(r"([\d.]+) x ([\d.]+)", str(info.get(f"Page {n:4d} size", "")))
        w, h = (float(size[1]), float(size[2])) if size else (0.0, 0.0)
        pages.append(
            {"w": w, "h": h, "rotate": int(info.get(f"Page {n:4d} rot") or 0) % 360, "dpi": None}
        )
    return {"page_count": count, "pages": pages}


def _classify_poppler(stderr: str) -> DocumentError:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    if any("Incorrect password" in ln for ln in lines):
        return DocumentError(
            PASSWORD,
            "the PDF is encrypted and needs its password to open; give the right one for this file",
        )
    if any("Invalid page count 0" in ln for ln in lines):
        return DocumentError(ZERO_PAGES, "the PDF has no pages (page count 0)")
    detail = "; ".join(dict.fromkeys(ln for ln in lines if "Unable to get page count" not in ln))
    return DocumentError(CORRUPT, f"poppler cannot open the PDF: {detail[:300] or 'no detail'}")


def _pdfium_info(
    path: str, password: str | None, max_pages: int, poppler_error: DocumentError
) -> dict[str, Any]:
    import pypdfium2 as pdfium

    try:
        doc = pdfium.PdfDocument(path, password=password)
    except pdfium.PdfiumError as exc:
        if exc.err_code == 4:  # FPDF_ERR_PASSWORD
            raise DocumentError(PASSWORD, "the PDF is encrypted and needs its password") from exc
        raise DocumentError(CORRUPT, f"{poppler_error.message}; pdfium: {exc}") from exc
    if len(doc) == 0:
        raise DocumentError(ZERO_PAGES, "the PDF has no pages")
    pages = []
    for index in range(min(len(doc), max_pages)):
        try:
            page = doc[index]
        except pdfium.PdfiumError:  # an unloadable page: size 0 fails it as a page later
            pages.append({"w": 0.0, "h": 0.0, "rotate": 0, "dpi": None})
            continue
        w, h = page.get_size()
        pages.append({"w": w, "h": h, "rotate": page.get_rotation() % 360, "dpi": None})
    return {"page_count": len(doc), "pages": pages}


def render_poppler(req: dict[str, Any], step: dict[str, Any], emit: Emit) -> None:
    """One contiguous chunk: pdftoppm writes PPM into a temp folder (its own PNG writer is ~8x
    slower), then threads encode PNG (Pillow releases the GIL) and rename into place."""
    from pdf2image import convert_from_path
    from pdf2image.exceptions import PDFPageCountError

    numbers = [number for number, _ in step["pages"]]
    threads = min(req["threads"], len(numbers))
    # The pid in temp names lets the parent remove them if it has to kill this process.
    tmp = tempfile.mkdtemp(prefix=f".chunk-{os.getpid()}-", dir=req["work_dir"])
    try:
        started = time.monotonic()
        try:
            produced = convert_from_path(
                req["path"],
                dpi=step["dpi"],
                first_page=numbers[0],
                last_page=numbers[-1],
                output_folder=tmp,
                paths_only=True,
                fmt="ppm",
                thread_count=threads,
                userpw=req["password"],
                ownerpw=req["password"],
                use_cropbox=True,
            )
            why = "poppler produced no image for it"  # pdf2image drops pdftoppm's exit status
        except PDFPageCountError as exc:
            produced, why = [], _classify_poppler(str(exc)).message
        paths = [Path(str(p)) for p in produced]  # paths_only: str, whatever the hints say
        by_number = {int(p.stem.rsplit("-", 1)[1]): p for p in paths}
        with ThreadPoolExecutor(threads) as pool:
            encoded = {
                n: pool.submit(_ppm_to_png, by_number[n], Path(target))
                for n, target in step["pages"]
                if n in by_number
            }
            wait(encoded.values())
        seconds = (time.monotonic() - started) / len(numbers)

        def collect(number: int, target: Path) -> None:
            if number not in encoded:
                raise PageError(CORRUPT, why, retry=True)
            encoded[number].result()  # re-raises what encoding raised, MemoryError included

        _each_page(req, step, emit, collect, seconds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _ppm_to_png(source: Path, target: Path) -> None:
    from PIL import Image

    with Image.open(source) as im:
        _save_png(im, target)
    source.unlink()  # free the temp space as we go


def render_pdfium(req: dict[str, Any], step: dict[str, Any], emit: Emit) -> None:
    """The step's pages with pypdfium2, one at a time (the fallback renderer)."""
    import pypdfium2 as pdfium

    doc, opened = None, None
    try:
        doc = pdfium.PdfDocument(req["path"], password=req["password"])
        doc.init_forms()  # draw form fields, as poppler does
    except pdfium.PdfiumError as exc:
        opened = exc

    def render(number: int, target: Path) -> None:
        try:
            if doc is None:
                raise PageError(CORRUPT, f"pdfium cannot open the file: {opened}")
            bitmap = doc[number - 1].render(scale=step["dpi"] / 72, may_draw_forms=True)
            _save_png(bitmap.to_pil().convert("RGB"), target)
        except pdfium.PdfiumError as exc:
            raise PageError(CORRUPT, f"pdfium cannot render it: {exc}") from exc

    _each_page(req, step, emit, render)


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
                _save_png(image.convert("RGB"), target)
            except ValueError as exc:
                raise PageError(UNSUPPORTED, f"mode {image.mode!r} cannot become RGB") from exc

        _each_page(req, step, emit, convert)


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


def _each_page(
    req: dict[str, Any],
    step: dict[str, Any],
    emit: Emit,
    produce: Callable[[int, Path], None],
    seconds: float | None = None,
) -> None:
    """Call `produce(number, target)` for each page of the step; a failure stays that page's."""
    from PIL import Image

    for number, target in step["pages"]:
        started = time.monotonic()
        try:
            produce(number, Path(target))
        except PageError as exc:
            emit(
                "page_error",
                page=number,
                category=exc.category,
                message=exc.message,
                retry=exc.retry,
            )
            continue
        except MemoryError:
            emit("page_error", page=number, category=TOO_LARGE, message=_oom(req), retry=True)
            continue
        with Image.open(target) as im:  # our own PNG: only the header is read
            width, height = im.size
        took = seconds if seconds is not None else time.monotonic() - started
        emit("page", page=number, width=width, height=height, seconds=round(took, 4))


def _save_png(image: Any, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        image.save(tmp, format="PNG", compress_level=_PNG_COMPRESS_LEVEL)
        os.replace(tmp, target)  # readers never see half a PNG
    finally:
        tmp.unlink(missing_ok=True)


def _oom(req: dict[str, Any]) -> str:
    return (
        f"rendering needs more memory than render_memory_mb={req['memory_mb']}; raise "
        "DOCEXTRACT_RASTER__RENDER_MEMORY_MB or lower the DPI"
    )


_RENDERERS = {"poppler": render_poppler, "pdfium": render_pdfium, "pillow": render_image}


def handle(req: dict[str, Any], emit: Emit) -> None:
    """Run one request; document-level failures become an "error" event."""
    try:
        if req["op"] == "info":
            (pdf_info if req["kind"] == "pdf" else image_info)(req, emit)
            return
        for index, step in enumerate(req["steps"]):
            emit("step", index=index)
            _RENDERERS[step["renderer"]](req, step, emit)
    except DocumentError as exc:
        emit("error", category=exc.category, message=exc.message)
    except MemoryError:
        emit("error", category=TOO_LARGE, message=_oom(req))


def main() -> int:
    # Keep the real stdout for the protocol; anything a library prints goes to stderr instead.
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def emit(event: str, **fields: Any) -> None:
        protocol.write(json.dumps({"event": event, **fields}) + "\n")

    req = json.loads(sys.stdin.read())
    limit = req["memory_mb"] * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))  # inherited by pdfinfo and pdftoppm
    handle(req, emit)
    emit("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
