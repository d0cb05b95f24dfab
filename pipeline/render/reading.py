"""The words of rendered pages, read inside the sandboxed worker: the 'words' request.

Runs in `pipeline.render.worker` (the same address-space cap and wall-clock deadline as
rendering): the PDF's text layer (pdfium) for each page, checked against the page as rendered
(`text_layer_usable`: no words, garbage glyphs, text that does not cover the ink), and Tesseract
OCR of the page PNG where the text layer is missing or unusable (`ocr` = "auto"), for every page
("always"), or never. Each page's `PageWords` is written as JSON beside its PNG (tmp + rename)
and announced with one event:

  {"event": "words", "page", "source", "words", "seconds", "unavailable", "note"}

A page whose words cannot be read is written with `unavailable` set: that is data (grounding
unavailable for the page), never an error of the document.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from pipeline.render.common import Emit

if TYPE_CHECKING:
    from pipeline.evidence.words import PageWords, Source

# A words worker runs at this niceness (Tesseract inherits it): on a machine where the model runs
# on the CPU, reading words must not take cores from its threads (bench/overhead.py).
NICENESS = 10
# What pdfium raises on a file or page it cannot read, besides its own PdfiumError.
_READ_ERRORS = (OSError, ValueError, RuntimeError, MemoryError, KeyError, IndexError)


def read_words(req: dict[str, Any], emit: Emit) -> None:
    """Read, write and announce the words of each page in `req["pages"]`: `[number, png path,
    dpi, target json path, turn, skew]`, `turn` and `skew` what the pages stage did to the PNG
    (`PageFacts.turned`, `.skew`: the text layer's boxes are carried onto it). Keys: `kind`
    ("pdf" or "image"), `path`, `passwords` (tried in order; null = none), `ocr`, `lang`,
    `limits` (`Limits` fields), `policy` (stored as is, with the page's turn and skew)."""
    from pipeline.evidence.words import Limits

    if os.nice(0) < NICENESS:  # this worker reads words only: the model's threads come first
        os.nice(NICENESS - os.nice(0))
    limits = Limits(**req["limits"])
    for number, png, dpi, target, turn, skew in req["pages"]:
        frame = Frame(int(turn), float(skew))
        words, note = page_words(req, int(number), Path(png), int(dpi), limits, frame)
        data = {**words.to_json(), "policy": req["policy"], "frame": list(frame), "note": note}
        _write(Path(target), data)
        emit(
            "words",
            page=number,
            source=words.source,
            words=len(words.words),
            seconds=round(words.seconds, 4),
            unavailable=words.unavailable,
            note=note,
        )


class Frame(NamedTuple):
    """What the pages stage did to a rendered page's PNG: turned it `turn` degrees clockwise,
    then straightened it by `skew` degrees (counter-clockwise)."""

    turn: int = 0
    skew: float = 0.0


AS_RENDERED = Frame()


def page_words(
    req: dict[str, Any], number: int, png: Path, dpi: int, limits: Any, frame: Frame = AS_RENDERED
) -> tuple[Any, str | None]:
    """(PageWords, note): the text layer when it is usable, else OCR (as `req["ocr"]` allows),
    boxes in the pixels of the PNG at `png`. The note says why a text layer was not used."""
    from PIL import Image

    from pipeline.evidence.words import PageWords

    started = time.perf_counter()
    with Image.open(png) as opened:
        gray = opened.convert("L")
    note: str | None = None
    if req["kind"] == "pdf" and req["ocr"] != "always":
        layer, note = _text_layer(req, number, dpi, limits, gray, frame)
        if layer is not None:
            return layer, None
    if req["ocr"] == "never":
        why = note or "OCR is off (grounding.ocr = never)"
        return _unavailable(number, gray, dpi, "text_layer", why, started), note
    from pipeline.evidence.ocr import ocr_words
    from pipeline.evidence.words import OcrUnavailable

    try:
        return ocr_words(gray, number, dpi, lang=req["lang"], limits=limits), note
    except OcrUnavailable as exc:
        return _unavailable(number, gray, dpi, "ocr", str(exc), started), note
    except MemoryError:
        why = "OCR ran out of the render worker's memory"
        return PageWords(number, gray.width, gray.height, dpi, "ocr", unavailable=why), note


def _text_layer(
    req: dict[str, Any], number: int, dpi: int, limits: Any, gray: Any, frame: Frame
) -> tuple[Any | None, str | None]:
    """The page's text-layer words if usable, else (None, why not). The text layer is read in
    the page's frame as rendered; its boxes are then turned as the pages stage turned the PNG."""
    import pypdfium2 as pdfium

    from pipeline.evidence.textlayer import text_layer_usable, text_layer_words

    words, last_error = None, "no password opens it"
    for password in req["passwords"] or [None]:
        try:
            words = text_layer_words(req["path"], number, dpi, password, limits)
            break
        except pdfium.PdfiumError as exc:
            last_error = str(exc)
        except _READ_ERRORS as exc:
            last_error = f"{type(exc).__name__}: {exc}"
            break
    if words is None:
        return None, f"the text layer cannot be read ({last_error})"
    words = words.turned(frame.turn, frame.skew)
    if words.words and invisible_share(req["path"], number, password) >= INVISIBLE_SHARE:
        return None, "text layer not used: it is invisible (an OCR layer added to a scan)"
    if (words.width, words.height) != gray.size and _off_by_more_than_one(words, gray):
        return None, (
            f"the text layer's page is {words.width}x{words.height} px, the rendered page "
            f"{gray.width}x{gray.height}"
        )
    usable, why = text_layer_usable(words, gray)
    return (words, None) if usable else (None, f"text layer not used: {why}")


INVISIBLE_SHARE = 0.5  # text objects drawn invisibly (render mode 3) above this: an OCR layer
MAX_TEXT_OBJECTS = 5000  # text objects inspected per page (a hostile page has millions)


def invisible_share(path: str, number: int, password: str | None) -> float:
    """Share of page `number`'s text objects (the first MAX_TEXT_OBJECTS) drawn invisibly:
    the OCR layer a scanner or another tool put over a page image. Such a layer says what
    someone else's OCR read, not what the page shows, and can be wrong: the page is OCRed
    instead (README, "Grounding and confidence")."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as raw

    doc = pdfium.PdfDocument(path, password=password)
    try:
        page = doc[number - 1]
        modes = []
        for obj in page.get_objects(filter=[raw.FPDF_PAGEOBJ_TEXT]):
            modes.append(raw.FPDFTextObj_GetTextRenderMode(obj.raw))
            if len(modes) >= MAX_TEXT_OBJECTS:
                break
        page.close()
    finally:
        doc.close()
    if not modes:
        return 0.0
    return sum(m == raw.FPDF_TEXTRENDERMODE_INVISIBLE for m in modes) / len(modes)


def _off_by_more_than_one(words: Any, gray: Any) -> bool:
    return abs(words.width - gray.width) > 1 or abs(words.height - gray.height) > 1


def _unavailable(
    number: int, gray: Any, dpi: int, source: Source, why: str, started: float
) -> PageWords:
    from pipeline.evidence.words import PageWords

    took = time.perf_counter() - started
    return PageWords(number, gray.width, gray.height, dpi, source, unavailable=why, seconds=took)


def _write(target: Path, data: dict[str, Any]) -> None:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, ensure_ascii=False))
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
