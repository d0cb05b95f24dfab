"""Words with boxes from a PDF's text layer (pdfium), and whether a text layer can be trusted.

Boxes are `(left, top, right, bottom)` ints in pixels of the page as poppler's `pdftoppm`
renders it at `dpi` (crop box, after /Rotate); pages are 1-based.

Why pdfium for the text layer: measured on the 10 text PDFs of sample_docs and
shared/corpus/invoices-real (same word counts within 1 per page), pypdfium2's text page took
0.7-16 ms per page in-process, `pdftotext -bbox-layout` 8.5-143 ms per page (a process per call;
the two XRechnung PDFs cost 137-143 ms). Its boxes land on the ink of the pdftoppm rendering
(tests/test_evidence_words.py checks the ink inside word boxes, rotated pages and crop boxes
included). pdftotext's one advantage, reading order by blocks, is bought back by sorting lines.

Limits: a hostile text layer (100,000 tiny glyphs) cannot stall: reading stops at
`Limits.max_chars` characters or `Limits.max_words` words per page or `Limits.text_layer_s`
seconds, and `PageWords.truncated` says so. The render worker's own time and memory limits
bound what the library itself does before the first character is read.
"""

from __future__ import annotations

import ctypes
import math
import time
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.evidence.words import DEFAULT_LIMITS, Limits, PageWords, Word, pixels_at
from pipeline.types import Box

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image


def text_layer_words(
    pdf_path: Path | str,
    page_number: int,
    dpi: int,
    password: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> PageWords:
    """The words of page `page_number` (1-based) of a PDF's text layer, boxes at `dpi`.

    Characters are grouped into words at spaces and pdfium's generated line breaks; lines are
    renumbered in reading order (top to bottom, then left to right). Raises ValueError for a
    page number out of range and `pypdfium2.PdfiumError` for a PDF pdfium cannot open.
    """
    import pypdfium2 as pdfium

    start = time.perf_counter()
    doc = pdfium.PdfDocument(str(pdf_path), password=password)
    try:
        if not 1 <= page_number <= len(doc):
            raise ValueError(f"page {page_number} is not in 1..{len(doc)} of {str(pdf_path)!r}")
        page = doc[page_number - 1]
        try:
            words, truncated, width, height = _read_page(page, dpi, limits, start)
        finally:
            page.close()
    finally:
        doc.close()
    return PageWords(
        page=page_number,
        width=width,
        height=height,
        dpi=dpi,
        source="text_layer",
        words=tuple(words),
        truncated=truncated,
        seconds=time.perf_counter() - start,
    )


def _read_page(
    page: Any, dpi: int, limits: Limits, start: float
) -> tuple[list[Word], bool, int, int]:
    import pypdfium2.raw as raw

    left, bottom, right, top = page.get_bbox()  # crop box within media box, inherited
    rotation = page.get_rotation() % 360
    crop_w, crop_h = right - left, top - bottom
    if rotation in (90, 270):
        width, height = pixels_at(crop_h, dpi), pixels_at(crop_w, dpi)
    else:
        width, height = pixels_at(crop_w, dpi), pixels_at(crop_h, dpi)
    scale = dpi / 72

    def to_pixels(x0: float, y0: float, x1: float, y1: float) -> tuple[float, ...]:
        # PDF user space (y up) -> crop box top-left (y down), then /Rotate clockwise.
        ux0, ux1 = x0 - left, x1 - left
        uy0, uy1 = top - y1, top - y0
        if rotation == 90:
            ux0, uy0, ux1, uy1 = crop_h - uy1, ux0, crop_h - uy0, ux1
        elif rotation == 180:
            ux0, uy0, ux1, uy1 = crop_w - ux1, crop_h - uy1, crop_w - ux0, crop_h - uy0
        elif rotation == 270:
            ux0, uy0, ux1, uy1 = uy0, crop_w - ux1, uy1, crop_w - ux0
        return ux0 * scale, uy0 * scale, ux1 * scale, uy1 * scale

    textpage = page.get_textpage()
    try:
        count = raw.FPDFText_CountChars(textpage)
        truncated = count > limits.max_chars
        chars: list[tuple[str, tuple[float, ...]]] = []
        lbox, bbox, rbox, tbox = (ctypes.c_double() for _ in range(4))
        refs = (ctypes.byref(lbox), ctypes.byref(rbox), ctypes.byref(bbox), ctypes.byref(tbox))
        words: list[tuple[str, tuple[float, ...]]] = []
        for index in range(min(count, limits.max_chars)):
            if index % 1024 == 0 and time.perf_counter() - start > limits.text_layer_s:
                truncated = True
                break
            char = chr(raw.FPDFText_GetUnicode(textpage, index) or 32)
            if char.isspace() or char == "\x00" or raw.FPDFText_IsGenerated(textpage, index) == 1:
                _flush(chars, words, limits)
                if len(words) >= limits.max_words:
                    truncated = truncated or index + 1 < count
                    break
                continue
            raw.FPDFText_GetCharBox(textpage, index, *refs)
            chars.append((char, to_pixels(lbox.value, bbox.value, rbox.value, tbox.value)))
        else:
            _flush(chars, words, limits)
        truncated = truncated or len(words) > limits.max_words
    finally:
        textpage.close()
    return _in_lines(words[: limits.max_words], width, height), truncated, width, height


def _flush(
    chars: list[tuple[str, tuple[float, ...]]],
    words: list[tuple[str, tuple[float, ...]]],
    limits: Limits,
) -> None:
    if not chars:
        return
    text = "".join(c for c, _ in chars)[: limits.max_word_chars]
    boxes = [b for _, b in chars]
    words.append(
        (
            text,
            (
                min(b[0] for b in boxes),
                min(b[1] for b in boxes),
                max(b[2] for b in boxes),
                max(b[3] for b in boxes),
            ),
        )
    )
    chars.clear()


def _in_lines(words: list[tuple[str, tuple[float, ...]]], width: int, height: int) -> list[Word]:
    """Words with integer boxes clipped to the page, grouped into lines by vertical overlap
    (a word joins the line whose middle it straddles), sorted top to bottom, left to right."""
    boxed = []
    for text, (x0, y0, x1, y1) in words:
        if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
            continue  # outside the crop box: not on the rendered page
        box = (
            max(0, math.floor(x0)),
            max(0, math.floor(y0)),
            min(width, max(math.ceil(x1), math.floor(x0) + 1)),
            min(height, max(math.ceil(y1), math.floor(y0) + 1)),
        )
        boxed.append((text, box))
    boxed.sort(key=lambda w: ((w[1][1] + w[1][3]) / 2, w[1][0]))
    lines: list[list[tuple[str, Box]]] = []
    for text, box in boxed:
        middle = (box[1] + box[3]) / 2
        for line in lines[-3:]:
            top = min(b[1] for _, b in line)
            bottom = max(b[3] for _, b in line)
            if top <= middle <= bottom:
                line.append((text, box))
                break
        else:
            lines.append([(text, box)])
    out = []
    for number, line in enumerate(lines):
        for text, box in sorted(line, key=lambda w: w[1][0]):
            out.append(Word(text, box, None, number))
    return out


# ------------------------------------------------------------------------- text layer usable

MIN_ROW_COVERAGE = 0.5  # share of the page's ink rows that word boxes must cover
MIN_INKED_BOXES = 0.5  # share of word boxes that must have ink inside
MAX_BAD_CHARS = 0.2  # share of U+FFFD, private-use, control or unassigned characters
MIN_WORDS_WITH_ALNUM = 0.5


def text_layer_usable(words: PageWords, gray: np.ndarray | Image.Image) -> tuple[bool, str]:
    """Whether a page's text-layer words can be trusted for grounding, with the reason.

    `gray` is the rendered page (8-bit grayscale array or PIL image, `words.width` x
    `words.height` px). Unusable: no words; garbage glyphs (over 20% bad characters or under
    half the words with a letter or digit); text that does not cover the ink (under half of
    the ink-bearing pixel rows inside a word box's rows, or under half of the word boxes
    holding ink: an invisible or misplaced OCR layer).
    """
    import numpy as np

    if not words.words:
        return False, "the text layer has no words"
    chars = "".join(w.text for w in words.words)
    bad = sum(1 for c in chars if _bad_char(c))
    if bad > MAX_BAD_CHARS * len(chars):
        return False, f"garbage glyphs: {bad} of {len(chars)} characters are not text"
    alnum = sum(1 for w in words.words if any(c.isalnum() for c in w.text))
    if alnum < MIN_WORDS_WITH_ALNUM * len(words.words):
        return False, f"garbage glyphs: {alnum} of {len(words.words)} words have a letter or digit"
    pixels = np.asarray(gray.convert("L") if hasattr(gray, "convert") else gray)
    ink = pixels < _ink_threshold(pixels)
    ink_rows = ink.sum(axis=1) >= 2
    covered = np.zeros(ink.shape[0], dtype=bool)
    inked = 0
    for word in words.words:
        x0, y0, x1, y1 = word.box
        covered[y0:y1] = True
        if ink[y0:y1, x0:x1].any():
            inked += 1
    if ink_rows.sum() and (ink_rows & covered).sum() < MIN_ROW_COVERAGE * ink_rows.sum():
        share = (ink_rows & covered).sum() / ink_rows.sum()
        return False, f"the text does not cover the ink ({share:.0%} of inked rows)"
    if inked < MIN_INKED_BOXES * len(words.words):
        return False, f"the text is not on the ink ({inked} of {len(words.words)} boxes inked)"
    return True, "usable"


def _bad_char(char: str) -> bool:
    return char == "\ufffd" or unicodedata.category(char) in ("Co", "Cc", "Cn", "Cs")


def _ink_threshold(pixels: np.ndarray) -> float:
    """Ink is darker than the paper by a margin: half way between paper and black."""
    import numpy as np

    paper = float(np.percentile(pixels, 90))
    return paper * 0.6
