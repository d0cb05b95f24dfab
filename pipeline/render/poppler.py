"""PDF pages with poppler (pdfinfo, pdftoppm through pdf2image), inside the render worker.

pdftoppm runs one contiguous chunk per call and inherits the worker's address-space cap. It
writes PPM (its own PNG writer is ~8x slower) into a temp folder named with the worker's pid;
threads encode PNG (Pillow releases the GIL) and rename into place.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from pipeline.render.common import (
    CONFIG,
    CORRUPT,
    PASSWORD,
    ZERO_PAGES,
    DocumentError,
    Emit,
    PageError,
    cache_writes,
    each_page,
    open_pdf,
    save_png,
)


def describe(path: str, password: str | None, max_pages: int) -> dict[str, Any]:
    """`page_count`, `use_password` and `pages` ([{"w", "h", "rotate", "dpi"}], sizes in points
    as pdfinfo prints them: the crop box before /Rotate) of the first `max_pages` pages.

    Raises DocumentError: password_required, zero_pages, corrupt, config_error (no poppler).
    """
    info, used = open_pdf(lambda given: _pdfinfo(path, given, max_pages), password)
    return {**info, "use_password": used}


def _pdfinfo(path: str, password: str | None, max_pages: int) -> dict[str, Any]:
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
        raise DocumentError(
            CONFIG,
            "poppler is not installed: apt install poppler-utils, or set "
            "DOCEXTRACT_RASTER__RENDERER=pdfium and DOCEXTRACT_RASTER__FALLBACK_RENDERER=none",
        ) from exc
    except PDFPageCountError as exc:
        raise classify_poppler(str(exc)) from exc
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


def classify_poppler(stderr: str) -> DocumentError:
    """The document error that poppler's stderr describes (password, zero pages, or corrupt)."""
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


def render(req: dict[str, Any], step: dict[str, Any], emit: Emit) -> None:
    """One contiguous chunk of pages at the step's DPI (crop box, /Rotate applied)."""
    # Imported here: concurrent.futures pulls in logging, 20 ms of every worker's start.
    from concurrent.futures import ThreadPoolExecutor, wait

    from pdf2image import convert_from_path
    from pdf2image.exceptions import PDFPageCountError

    from pipeline.render.textdirection import text_directions

    numbers = [number for number, _ in step["pages"]]
    threads = min(req["threads"], len(numbers))
    # The pid in temp names lets the parent remove them if it has to kill this process.
    with cache_writes(req["work_dir"]):
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
            produced, why = [], classify_poppler(str(exc)).message
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

        texts = text_directions(req["path"], req["password"], list(encoded))
        each_page(req, step, emit, collect, seconds, texts)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _ppm_to_png(source: Path, target: Path) -> None:
    from PIL import Image

    with Image.open(source) as im:
        save_png(im, target)
    source.unlink()  # free the temp space as we go
