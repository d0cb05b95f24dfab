"""The page's own words with boxes, as data: `Word`, `PageWords`, `Limits`, `OcrUnavailable`.

Boxes are `(left, top, right, bottom)` ints in pixels of the page as poppler's `pdftoppm`
renders it at `dpi` (crop box, after /Rotate); pages are 1-based. `textlayer` reads them from a
PDF's text layer, `ocr` from an image.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from pipeline.types import Box

Source = Literal["text_layer", "ocr"]


class OcrUnavailable(RuntimeError):
    """The OCR engine cannot run (Tesseract missing, language data missing, engine crashed).

    The caller decides: a ConfigError when OCR is forced, else the page is "grounding
    unavailable"."""


@dataclass(frozen=True)
class Limits:
    """Bounds on reading one page's words."""

    max_words: int = 5000  # words kept per page; the rest are dropped and `truncated` is set
    max_word_chars: int = 64  # characters kept per word (a longer "word" is cut)
    max_chars: int = 60_000  # text-layer characters read per page
    text_layer_s: float = 2.0  # seconds spent reading one page's text layer
    ocr_s: float = 60.0  # seconds one Tesseract run may take before it is killed


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Word:
    """One word: its text, box in page pixels, OCR confidence in [0, 1] (None: text layer),
    and the id of its line (words of a line share it; ids grow in reading order)."""

    text: str
    box: Box
    confidence: float | None = None
    line: int = 0


@dataclass(frozen=True)
class PageWords:
    """The words of one page (1-based `page`) of a `width` x `height` px image at `dpi`.

    `unavailable` holds the reason when no words could be read (then `words` is empty);
    `truncated` is True when a limit dropped words.
    """

    page: int
    width: int
    height: int
    dpi: int
    source: Source
    words: tuple[Word, ...] = ()
    unavailable: str | None = None
    truncated: bool = False
    seconds: float = field(default=0.0, compare=False)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (cache it beside the page PNG as `page-0001.words.json`)."""
        data = asdict(self)
        data["words"] = [[w.text, list(w.box), w.confidence, w.line] for w in self.words]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PageWords:
        """The inverse of `to_json`. Raises KeyError/ValueError/TypeError on a malformed dict."""
        words = tuple(
            Word(str(t), (int(b[0]), int(b[1]), int(b[2]), int(b[3])), c, int(line))
            for t, b, c, line in data["words"]
        )
        return cls(
            page=int(data["page"]),
            width=int(data["width"]),
            height=int(data["height"]),
            dpi=int(data["dpi"]),
            source=data["source"],
            words=words,
            unavailable=data.get("unavailable"),
            truncated=bool(data.get("truncated", False)),
            seconds=float(data.get("seconds", 0.0)),
        )


def pixels_at(points: float, dpi: int) -> int:
    """Pixels that `points` (1/72 inch) span at `dpi`, rounded up as pdftoppm does."""
    return math.ceil(points * dpi / 72 - 1e-9)
