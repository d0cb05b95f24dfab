"""The OCR vote: the last judge of which way is up, for pages the text layer, the ink and OSD
all leave unsure (charts, receipt photos, image-only PDF pages, faint fax pages).

Tesseract reads the page (`evidence.ocr`, psm 11, at VOTE_DPI) turned each way; each turn
scores the letters of the words it reads with confidence, alphanumeric with at least MIN_WORD
letters (`confident_letters`: "Page1" scores 4). Text read the wrong way round makes few such
words: in bench/orientation.py a wrong turn never scored more than half the right one. The best
turn is taken when it has at least MIN_LETTERS and MARGIN times the runner-up's, or at least
MIN_ALONE when no other turn scores at all (a page of one word, "Page1"); else the vote is
unsure. A page the vote leaves unsure having read little (small print, a faint word) is read
again at HIGH_DPI. "Once upon a" (8 letters, "uodn" upside down at 0.87: half the right score)
stays unsure: turning a page on a guess is worse than not turning.
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
HIGH_DPI = 300  # the magazine page's small print reads nothing confident at 150, 12 letters here
VOTE_TIMEOUT_S = 20.0  # one Tesseract run; a page that takes longer is left unsure
MIN_WORD_CONFIDENCE = 0.8
MIN_WORD = 3  # letters: "a", "of" and two-letter garbage ("zo", "oT") read at any turn
MIN_LETTERS = 10  # confident letters the best turn needs
MARGIN = 2.2  # times the runner-up's; the worst wrong turn in the bench had 0.5 of the right
MIN_ALONE = 4  # letters, when every other turn reads none ("Page1"; no wrong turn ever scored
# where the right one read nothing in the bench)


def ocr_vote(image: Image.Image, dpi: int) -> Guess | None:
    """The clockwise turn (0, 90, 180, 270) under which Tesseract reads the most confident
    letters, when it clearly beats every other turn; `Guess(0, "none", c)` when it does not;
    None when Tesseract is not installed, fails or runs past VOTE_TIMEOUT_S. Confidence: the
    share of the best score the runner-up falls short by (0..1; 1 - 1/MARGIN or more to win)."""
    try:
        scores = _scores(image, dpi, VOTE_DPI)
        verdict = decide(scores)
        if verdict.by != "ocr" and max(scores.values()) < MIN_LETTERS:
            verdict = decide(_scores(image, dpi, HIGH_DPI))
    except OcrUnavailable as exc:
        log.warning("OCR vote on orientation skipped: %s", exc)
        return None
    return verdict


def decide(scores: dict[int, int]) -> Guess:
    """The vote's verdict on the confident letters read at each turn."""
    (best, top), (_, runner_up) = sorted(scores.items(), key=lambda kv: -kv[1])[:2]
    lead = round(1 - runner_up / top, 3) if top else 0.0
    clear = top >= MIN_LETTERS and top >= MARGIN * runner_up
    if clear or (top >= MIN_ALONE and runner_up == 0):
        return Guess(best, "ocr", lead)
    return Guess(0, "none", lead)


def confident_letters(words: tuple[Word, ...]) -> int:
    """Letters in the words read with confidence >= MIN_WORD_CONFIDENCE that are alphanumeric
    with at least MIN_WORD letters ("Page1": 4; no dictionary: numbers, punctuation and short
    garbage do not count)."""
    total = 0
    for w in words:
        letters = sum(c.isalpha() for c in w.text)
        if (w.confidence or 0.0) >= MIN_WORD_CONFIDENCE and w.text.isalnum():
            total += letters if letters >= MIN_WORD else 0
    return total


def _scores(image: Image.Image, dpi: int, vote_dpi: int) -> dict[int, int]:
    """Confident letters read at each turn of `image` (at `dpi`) resampled to `vote_dpi`."""
    gray = image.convert("L")
    if dpi != vote_dpi:
        size = (round(image.width * vote_dpi / dpi), round(image.height * vote_dpi / dpi))
        gray = gray.resize(size, Image.Resampling.LANCZOS)
    return {turn: confident_letters(_read(gray, turn, vote_dpi)) for turn in TURNS}


def _read(image: Image.Image, turn: int, dpi: int) -> tuple[Word, ...]:
    turned = image.rotate(-turn, expand=True) if turn else image  # rotate() is anticlockwise
    limits = Limits(ocr_s=VOTE_TIMEOUT_S)
    return ocr_words(turned, dpi=dpi, limits=limits).words
