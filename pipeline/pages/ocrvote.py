"""The OCR vote: the last judge of which way is up, for pages the text layer, the ink and OSD
all leave unsure (charts, receipt photos, image-only PDF pages, faint fax pages).

Tesseract reads the page (`evidence.ocr`, psm 11, at VOTE_DPI) turned each way; each turn
scores the letters of the words it reads with confidence, alphabetic and at least MIN_WORD
letters long (`confident_letters`). Text read the wrong way round makes few such words: in
bench/orientation.py a wrong turn never scored more than half the right one. The best turn is
taken only when it has at least MIN_LETTERS and MARGIN times the runner-up's; else the vote is
unsure. A page with a line or two (a one-word page, "Once upon a" that reads "uodn" upside
down at 0.87) stays unsure by MIN_LETTERS: turning a page on a guess is worse than not turning.
"""

from __future__ import annotations

import logging

from PIL import Image

from pipeline.evidence.ocr import ocr_words
from pipeline.evidence.words import Limits, OcrUnavailable, Word
from pipeline.pages.guess import Guess

log = logging.getLogger(__name__)

TURNS = (0, 90, 180, 270)
VOTE_DPI = 150  # small print still reads; four runs cost ~1.8 s a page on a busy 2-core CPU
VOTE_TIMEOUT_S = 20.0  # one Tesseract run; a page that takes longer is left unsure
MIN_WORD_CONFIDENCE = 0.8
MIN_WORD = 3  # letters: "a", "of" and two-letter garbage ("zo", "oT") read at any turn
MIN_LETTERS = 10  # confident letters the best turn needs
MARGIN = 2.5  # times the runner-up's; the worst wrong turn in the bench had 0.5 of the right


def ocr_vote(image: Image.Image, dpi: int) -> Guess | None:
    """The clockwise turn (0, 90, 180, 270) under which Tesseract reads the most confident
    letters, when it clearly beats every other turn; `Guess(0, "none", c)` when it does not;
    None when Tesseract is not installed, fails or runs past VOTE_TIMEOUT_S. Confidence: the
    share of the best score the runner-up falls short by (0..1; 1 - 1/MARGIN or more to win)."""
    small = _at_vote_dpi(image, dpi)
    try:
        scores = {turn: confident_letters(_read(small, turn)) for turn in TURNS}
    except OcrUnavailable as exc:
        log.warning("OCR vote on orientation skipped: %s", exc)
        return None
    return decide(scores)


def decide(scores: dict[int, int]) -> Guess:
    """The vote's verdict on the confident letters read at each turn."""
    (best, top), (_, runner_up) = sorted(scores.items(), key=lambda kv: -kv[1])[:2]
    lead = round(1 - runner_up / top, 3) if top else 0.0
    if top >= MIN_LETTERS and top >= MARGIN * runner_up:
        return Guess(best, "ocr", lead)
    return Guess(0, "none", lead)


def confident_letters(words: tuple[Word, ...]) -> int:
    """Letters in the words read with confidence >= MIN_WORD_CONFIDENCE that are alphabetic
    and at least MIN_WORD long (no dictionary: numbers and short garbage do not count)."""
    return sum(
        len(w.text)
        for w in words
        if (w.confidence or 0.0) >= MIN_WORD_CONFIDENCE
        and w.text.isalpha()
        and len(w.text) >= MIN_WORD
    )


def _at_vote_dpi(image: Image.Image, dpi: int) -> Image.Image:
    gray = image.convert("L")
    if dpi == VOTE_DPI:
        return gray
    size = (round(image.width * VOTE_DPI / dpi), round(image.height * VOTE_DPI / dpi))
    return gray.resize(size, Image.Resampling.LANCZOS)


def _read(image: Image.Image, turn: int) -> tuple[Word, ...]:
    turned = image.rotate(-turn, expand=True) if turn else image  # rotate() is anticlockwise
    limits = Limits(ocr_s=VOTE_TIMEOUT_S)
    return ocr_words(turned, dpi=VOTE_DPI, limits=limits).words
