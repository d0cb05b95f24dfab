"""The page's own words with boxes, as data: `Word`, `PageWords`, `Limits`, `OcrUnavailable`.

Boxes are `(left, top, right, bottom)` ints in pixels of the page as poppler's `pdftoppm`
renders it at `dpi` (crop box, after /Rotate); pages are 1-based. `textlayer` reads them from a
PDF's text layer, `ocr` from an image; `PageWords.turned` carries text-layer boxes onto the page
as the pages stage turned and straightened it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
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

    def turned(self, turn: int, skew: float = 0.0) -> PageWords:
        """These words on the page as the pages stage leaves it (`pipeline.pages.prepare`):
        turned `turn` degrees clockwise (0, 90, 180, 270), then straightened by `skew` degrees
        counter-clockwise about its centre, same size. A box is the box around its turned
        corners, kept inside the page."""
        if not turn and not skew:
            return self
        width, height = (
            (self.height, self.width) if turn in (90, 270) else (self.width, self.height)
        )
        words = tuple(
            replace(
                w, box=_skewed(_turned(w.box, turn, self.width, self.height), skew, width, height)
            )
            for w in self.words
        )
        return replace(self, width=width, height=height, words=words)


def _turned(box: Box, turn: int, width: int, height: int) -> Box:
    """`box` of a `width` x `height` page turned `turn` degrees clockwise with the page."""
    x0, y0, x1, y1 = box
    if turn == 90:
        return height - y1, x0, height - y0, x1
    if turn == 180:
        return width - x1, height - y1, width - x0, height - y0
    if turn == 270:
        return y0, width - x1, y1, width - x0
    return box


def _skewed(box: Box, degrees: float, width: int, height: int) -> Box:
    """`box` turned `degrees` counter-clockwise about the page's centre (as Pillow's
    `Image.rotate` turns the page, y pointing down), as the box around its corners."""
    if not degrees:
        return box
    cos, sin = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    cx, cy = width / 2, height / 2
    xs, ys = [], []
    for x, y in ((box[0], box[1]), (box[2], box[1]), (box[0], box[3]), (box[2], box[3])):
        dx, dy = x - cx, y - cy
        xs.append(cx + dx * cos + dy * sin)
        ys.append(cy - dx * sin + dy * cos)
    return (
        max(0, math.floor(min(xs))),
        max(0, math.floor(min(ys))),
        min(width, math.ceil(max(xs))),
        min(height, math.ceil(max(ys))),
    )


def pixels_at(points: float, dpi: int) -> int:
    """Pixels that `points` (1/72 inch) span at `dpi`, rounded up as pdftoppm does."""
    return math.ceil(points * dpi / 72 - 1e-9)
