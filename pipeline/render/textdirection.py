"""Which way a PDF page's text runs on the page as rendered: read from its text layer (pdfium)
inside the render worker, and sent with the page's "page" event for the pages stage.

Each character of a text layer carries its own matrix; its first column is the direction of
the baseline in PDF user space. Turned by the page's /Rotate (clockwise, as the renderers
apply it), that is the direction the text runs on the rendered page: right (upright), up,
left (upside down) or down. The page's `text` is the clockwise turn that makes most of its
characters run right, how many characters were read and what share agrees:

  {"turn": 0 | 90 | 180 | 270, "chars": int, "share": float}

None when the page has no text layer. Mirrored characters are left out. At most MAX_CHARS
characters are read (a hostile text layer has millions); 2,000 take about a millisecond.
"""

from __future__ import annotations

import ctypes
import math
from typing import Any

MAX_CHARS = 2000
# What pdfium raises on a file or page it cannot read, besides its own PdfiumError.
_READ_ERRORS = (OSError, ValueError, RuntimeError, MemoryError, KeyError, IndexError)


def text_direction(page: Any) -> dict[str, Any] | None:
    """The direction of the text of a loaded pdfium page (`pypdfium2.PdfPage`), as rendered."""
    import pypdfium2.raw as raw

    rotate = page.get_rotation() % 360
    textpage = page.get_textpage()
    try:
        votes = [0, 0, 0, 0]  # characters needing a clockwise turn of 0, 90, 180, 270
        matrix = raw.FS_MATRIX()
        for index in range(min(raw.FPDFText_CountChars(textpage), MAX_CHARS)):
            char = raw.FPDFText_GetUnicode(textpage, index)
            if char <= 32 or raw.FPDFText_IsGenerated(textpage, index) == 1:
                continue
            if not raw.FPDFText_GetMatrix(textpage, index, ctypes.byref(matrix)):
                continue
            if matrix.a * matrix.d - matrix.b * matrix.c <= 0:
                continue  # mirrored (or flat): says nothing about which way is up
            # the baseline's angle, counter-clockwise in user space; /Rotate turns it clockwise
            angle = math.degrees(math.atan2(matrix.b, matrix.a)) - rotate
            votes[round(angle / 90) % 4] += 1
    finally:
        textpage.close()
    chars = sum(votes)
    if not chars:
        return None
    best = max(range(4), key=votes.__getitem__)
    return {"turn": 90 * best, "chars": chars, "share": round(votes[best] / chars, 3)}


def text_directions(
    path: str, password: str | None, numbers: list[int]
) -> dict[int, dict[str, Any] | None]:
    """`text_direction` of pages `numbers` (1-based) of the PDF at `path`; a page (or a file)
    pdfium cannot read has none: the pages stage then measures the ink."""
    import pypdfium2 as pdfium

    found: dict[int, dict[str, Any] | None] = dict.fromkeys(numbers)
    try:
        doc = pdfium.PdfDocument(path, password=password)
    except (pdfium.PdfiumError, *_READ_ERRORS):
        return found
    try:
        for number in numbers:
            try:
                page = doc[number - 1]
                try:
                    found[number] = text_direction(page)
                finally:
                    page.close()
            except (pdfium.PdfiumError, *_READ_ERRORS):
                continue
    finally:
        doc.close()
    return found
