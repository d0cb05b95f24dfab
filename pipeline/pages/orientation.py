"""Which way is up: a page's orientation (0/90/180/270) and small skew, from the direction of
its PDF text layer, measured on its ink, or asked of Tesseract (orientation detection, OSD,
then the OCR vote).

The text layer (born-digital pages; read by the render worker, `render.textdirection`) says
directly which way the characters run on the rendered page: with at least MIN_TEXT_CHARS
characters it decides, and the image measures are not asked.

The ink measure (numpy only, at LEAN_DPI, ~200 ms a page) for pages without a text layer:
- axis: text lines are horizontal where closing gaps of about 1 mm along a direction merges the
  ink into the longest runs (letters into words and lines; across lines the gaps stay open);
- up or down: letters stand on one baseline but end at two heights on top (`baseline_lean`).
Its confidence grows with both margins and with the number of lines; a sparse page (a few
words) is not sure, and Tesseract, which reads letter shapes, is asked (`auto`): its OSD, then
the OCR vote (`ocrvote`: the turn under which it reads clearly the most confident words). A
page no method is sure about is left as rendered: turning a page on a guess is worse than not
turning.

Skew: the angle within ±max_skew_deg at which the rows of ink are sharpest (the sum of squares
of the row profile of the ink sheared by that angle), coarse then fine.
"""

from __future__ import annotations

import logging
import math
import re
import shutil
import subprocess
from io import BytesIO

import numpy as np
from PIL import Image

from pipeline.pages.guess import Guess
from pipeline.pages.ink import Ink, page_ink
from pipeline.pages.ocrvote import ocr_vote
from pipeline.settings import PagesSettings
from pipeline.tiling.textsize import runs
from pipeline.types import TextDirection

log = logging.getLogger(__name__)

GAP_MM = 1.0  # gaps closed along a direction: between letters, not between lines
MIN_TEXT_CHARS = 40  # fewer characters in the text layer (a stamp, a page number): ask the ink
MIN_TEXT_SHARE = 0.8  # of them running the same way, to turn a page
LEAN_DPI = 200  # the up/down measure's resolution: x-height and cap height ~3 px apart
FULL_LEAN = 0.1  # a baseline lean this strong (share of ink columns) is sure
FULL_COLUMNS = 3000  # ink columns in text lines (about 500 letters) for a sure lean
OSD_MAX_DPI = 200  # Tesseract reads orientation as well at 200 DPI as at 400, in half the time
OSD_TIMEOUT_S = 30.0
_OSD_ROTATE = re.compile(r"Rotate:\s*(\d+)")
_OSD_CONFIDENCE = re.compile(r"Orientation confidence:\s*([\d.]+)")
_MIN_SKEW_POINTS = 500  # fewer ink pixels: too little text to measure a tilt


def orient(
    image: Image.Image, dpi: int, settings: PagesSettings, text: TextDirection | None = None
) -> Guess:
    """The turn that stands the page upright, by `settings.orientation`; `Guess(0, "none", c)`
    when no method is sure enough, `Guess(0, "off", 0)` when orientation is off. `text`: the
    direction of the page's PDF text layer as rendered, which decides when it has enough
    characters (`auto`, `text`); the image measures are for pages without one."""
    method = settings.orientation
    if method == "off":
        return Guess(0, "off", 0.0)
    if method == "ocr-vote":
        return ocr_vote(image, dpi) or Guess(0, "none", 0.0)
    if method in ("auto", "text"):
        by_text = text_orientation(text)
        if by_text is not None or method == "text":
            return by_text or Guess(0, "none", 0.0)
    by_ink = None
    if method in ("auto", "ink"):
        by_ink = ink_orientation(page_ink(image, dpi, LEAN_DPI))
    if by_ink is not None and (method == "ink" or by_ink.confidence >= settings.ink_min_confidence):
        return by_ink if by_ink.confidence >= settings.ink_min_confidence else _unsure(by_ink)
    by_osd = osd_orientation(image, dpi)
    if by_osd is not None and by_osd.confidence >= settings.osd_min_confidence:
        return by_osd
    if method == "auto":
        by_vote = ocr_vote(image, dpi)
        if by_vote is not None and by_vote.by == "ocr":
            return by_vote
    best = max(
        (g for g in (by_ink, by_osd) if g is not None), key=lambda g: g.confidence, default=None
    )
    return _unsure(best)


def _unsure(guess: Guess | None) -> Guess:
    return Guess(0, "none", round(guess.confidence, 3) if guess else 0.0)


def text_orientation(text: TextDirection | None) -> Guess | None:
    """What the text layer says, or None when the page has too little text for it to say.
    A page whose text mostly runs upright as rendered is left alone, whatever its ink looks
    like; one whose text mostly runs another way is turned only when MIN_TEXT_SHARE of its
    characters agree (a sideways table header on an upright page does not turn it)."""
    if text is None or text.chars < MIN_TEXT_CHARS:
        return None
    if text.turn == 0 or text.share >= MIN_TEXT_SHARE:
        return Guess(text.turn, "text", text.share)
    return Guess(0, "none", text.share)  # mixed directions: leave it as rendered


# -- the ink measure ---------------------------------------------------------------------------


def ink_orientation(ink: Ink) -> Guess:
    """The ink measure's turn and its confidence (0..1). `ink` at about LEAN_DPI: at 100 DPI
    the x-height and cap-height lines of body text are a pixel or two apart."""
    horizontal, axis_sure = text_axis(ink)
    upright = ink.mask if horizontal else np.rot90(ink.mask, -1)  # vertical lines: turn 90 cw
    # a tilt of a few degrees smears each line over its neighbours in the strips: straighten
    # first (a tilt is the same angle whichever way up the page is)
    tilt = measure_skew(Ink(upright, ink.dpi), 5.0)
    lean, columns = baseline_lean(_straightened(upright, tilt) if tilt else upright)
    turn = (0 if lean >= 0 else 180) if horizontal else (90 if lean >= 0 else 270)
    lean_sure = min(1.0, abs(lean) / FULL_LEAN) * min(1.0, columns / FULL_COLUMNS)
    return Guess(turn, "ink", round(min(axis_sure, lean_sure), 3))


def text_axis(ink: Ink) -> tuple[bool, float]:
    """(whether text lines run along the rows, how sure 0..1): closing gaps of GAP_MM merges
    letters into long runs along the lines, not across them."""
    gap = max(1, round(GAP_MM * ink.dpi / 25.4))
    along_rows = _mean_run_after_closing(ink.mask, gap)
    along_cols = _mean_run_after_closing(ink.mask.T, gap)
    ratio = max(along_rows, along_cols) / max(min(along_rows, along_cols), 1e-9)
    return along_rows >= along_cols, min(1.0, max(0.0, ratio - 1.0))  # twice as long: sure


def _straightened(mask: np.ndarray, angle: float) -> np.ndarray:
    """`mask` with each column shifted so that lines tilted by `angle` degrees lie flat."""
    height, width = mask.shape
    shift = np.round((np.arange(width) - width / 2) * math.tan(math.radians(angle))).astype(int)
    rows = np.arange(height)[:, None] + shift[None, :]
    inside = (rows >= 0) & (rows < height)
    return inside & mask[rows.clip(0, height - 1), np.arange(width)[None, :]]


def _mean_run_after_closing(mask: np.ndarray, gap: int) -> float:
    """Mean length of the ink runs along each row once gaps of at most `gap` px are closed."""
    if not mask.any():
        return 0.0
    width = mask.shape[1]
    index = np.arange(width)[None, :]
    before = np.maximum.accumulate(np.where(mask, index, -(10**6)), axis=1)
    after = np.minimum.accumulate(np.where(mask, index, 10**6)[:, ::-1], axis=1)[:, ::-1]
    closed = mask | ((after - before) <= gap + 1)
    starts = int((closed[:, 1:] & ~closed[:, :-1]).sum() + closed[:, 0].sum())
    return float(closed.sum()) / max(starts, 1)


def baseline_lean(mask: np.ndarray) -> tuple[float, int]:
    """How much more the ink of text lines ends on one line at the bottom than at the top
    (positive: upright), and the number of ink columns it was measured on.

    Nearly every Latin letter and digit stands on the baseline; only g, j, p, q, y go below
    it. At the top they end at two heights: the x-height (a, c, e, n...) and the cap height
    (capitals, digits, b, d, h...). So in each text line, the lowest ink of each column falls
    on one row more often than the highest ink does. Upside down it is the other way round.
    Capitals and digits alone end on one row at both sides: no lean, the measure is not sure.
    (Counting ink above and below the x-height core instead, as before, read an upright table
    of digits, capitals and g/q/y as upside down: the core reached the cap height, so only
    the descenders stood out.)
    """
    height, width = mask.shape
    strip = max(32, width // 12)
    at_bottom = at_top = columns = 0
    for left in range(0, width, strip):
        part = mask[:, left : left + strip]
        counts = part.sum(axis=1)
        for top, bottom in runs(counts >= 1):
            size = bottom - top
            if (
                size < 4
                or size > height / 15
                or counts[top:bottom].sum() > 0.45 * part[top:bottom].size
            ):
                continue  # a rule, a picture or a fill, not a line of text
            line = part[top:bottom]
            line = line[:, line.any(axis=0)]
            if line.shape[1] < 6:
                continue
            highest = line.argmax(axis=0)
            lowest = size - 1 - line[::-1].argmax(axis=0)
            at_bottom += _on_modal_row(lowest, size)
            at_top += _on_modal_row(highest, size)
            columns += line.shape[1]
    return (at_bottom - at_top) / max(columns, 1), columns


def _on_modal_row(rows: np.ndarray, size: int) -> int:
    """How many of `rows` (0..size-1) fall on the most common one."""
    return int(np.bincount(rows, minlength=size).max())


# -- Tesseract ---------------------------------------------------------------------------------


def osd_orientation(image: Image.Image, dpi: int) -> Guess | None:
    """Tesseract's OSD (`tesseract - - --psm 0`) on the page: its clockwise turn and its
    confidence (about 0-20; above 2 is usually right). None when Tesseract is not installed, or
    finds too few letters, or fails."""
    binary = shutil.which("tesseract")
    if binary is None:
        return None
    if dpi > OSD_MAX_DPI:
        factor = math.ceil(dpi / OSD_MAX_DPI)
        image, dpi = image.reduce(factor), dpi // factor
    buffer = BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    try:
        done = subprocess.run(
            [binary, "-", "-", "--psm", "0", "--dpi", str(dpi)],
            input=buffer.getvalue(),
            capture_output=True,
            timeout=OSD_TIMEOUT_S,
            env={"OMP_THREAD_LIMIT": "1", "PATH": "/usr/bin:/bin"},
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("tesseract OSD failed: %s", exc)
        return None
    text = done.stdout.decode(errors="replace")
    turn, confidence = _OSD_ROTATE.search(text), _OSD_CONFIDENCE.search(text)
    if done.returncode != 0 or turn is None or confidence is None:
        return None  # "Too few characters", an image without text
    return Guess(int(turn[1]) % 360, "osd", round(float(confidence[1]), 2))


# -- skew --------------------------------------------------------------------------------------


def measure_skew(ink: Ink, max_deg: float) -> float:
    """The page's tilt in degrees (counter-clockwise turn that straightens it), within
    ±`max_deg`; 0.0 when there is too little ink to tell or the best angle is at the limit
    (more tilted than this measures)."""
    ys, xs = np.nonzero(ink.mask)
    if ys.size < _MIN_SKEW_POINTS:
        return 0.0
    if ys.size > 80_000:  # a sample is as sharp and keeps the cost flat
        pick = np.random.default_rng(0).choice(ys.size, 80_000, replace=False)
        ys, xs = ys[pick], xs[pick]
    xs = xs - xs.mean()
    coarse = _sharpest(ys, xs, np.arange(-max_deg, max_deg + 1e-9, 0.25))
    if abs(coarse) >= max_deg:
        return 0.0
    return round(_sharpest(ys, xs, np.arange(coarse - 0.25, coarse + 0.2501, 0.05)), 2)


def _sharpest(ys: np.ndarray, xs: np.ndarray, angles: np.ndarray) -> float:
    best, best_score = 0.0, -1.0
    for angle in angles:
        rows = np.round(ys - xs * math.tan(math.radians(angle))).astype(np.int64)
        counts = np.bincount(rows - rows.min())
        score = float(np.dot(counts, counts))
        if score > best_score:
            best, best_score = float(angle), score
    return best
