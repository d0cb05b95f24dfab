"""OCR words with boxes and confidence: Tesseract through its CLI (TSV output).

No Python binding: one `tesseract stdin stdout tsv` process per page, with a timeout, one thread
(`OMP_THREAD_LIMIT=1`: pages run side by side instead). A missing program raises
`OcrUnavailable`; the caller decides whether that is a ConfigError (OCR forced) or "grounding
unavailable" for the page.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import time
from typing import TYPE_CHECKING

from pipeline.evidence.words import DEFAULT_LIMITS, Limits, OcrUnavailable, PageWords, Word

if TYPE_CHECKING:
    from PIL import Image


def tesseract_available() -> bool:
    """True when the `tesseract` program is on PATH."""
    return shutil.which("tesseract") is not None


def ocr_words(
    image: Image.Image,
    page: int = 1,
    dpi: int = 200,
    lang: str = "eng",
    psm: int = 11,
    limits: Limits = DEFAULT_LIMITS,
    upscale_below_px: int = 0,
) -> PageWords:
    """OCR words of a page image with Tesseract (its CLI, TSV output), boxes in `image` pixels.

    `psm` 11 (sparse text) is the default: on sample_docs' scans and charts it grounded 281 of
    293 truth values against 262 with psm 3; on the nine SROIE receipt photos Tesseract could
    read unaided, 26 of 27 against 23 (psm 3). An image narrower than `upscale_below_px` is
    enlarged 2x for Tesseract and its boxes scaled back; off by default: 2x upscaling of the
    receipt photos found fewer values in twice the time. A page where Tesseract reads under
    `RETRY_BELOW_WORDS` words is read again after a plain threshold (sroie-600: 0 words, then
    153). Confidence is Tesseract's word confidence
    / 100. Raises OcrUnavailable when Tesseract is missing, fails or runs past `limits.ocr_s`
    seconds.
    """
    from PIL import Image as PILImage

    start = time.perf_counter()
    exe = shutil.which("tesseract")
    if exe is None:
        raise OcrUnavailable(
            "the 'tesseract' program is not installed; install Debian's tesseract-ocr package "
            "or set grounding.ocr to 'never'"
        )
    factor = 2 if image.width < upscale_below_px else 1
    work = image.convert("L")
    if factor > 1:
        work = work.resize(
            (image.width * factor, image.height * factor), PILImage.Resampling.LANCZOS
        )
    tsv = _tesseract(exe, work, lang, psm, dpi * factor, limits, page)
    words, truncated = parse_tsv(tsv, factor, limits)
    if len(words) < RETRY_BELOW_WORDS:
        # Tesseract's own binarization fails on some photos (a dark border, uneven light): it
        # then reads nothing at all. A plain threshold against the paper brightness rescues it.
        tsv = _tesseract(exe, _binarized(work), lang, psm, dpi * factor, limits, page)
        retried, truncated_again = parse_tsv(tsv, factor, limits)
        if len(retried) > len(words):
            words, truncated = retried, truncated_again
    return PageWords(
        page=page,
        width=image.width,
        height=image.height,
        dpi=dpi,
        source="ocr",
        words=tuple(words),
        truncated=truncated,
        seconds=time.perf_counter() - start,
    )


RETRY_BELOW_WORDS = 5  # fewer words than this: retry on a thresholded image


def _tesseract(
    exe: str, image: Image.Image, lang: str, psm: int, dpi: int, limits: Limits, page: int
) -> str:
    """Tesseract's TSV for one grayscale image. Raises OcrUnavailable."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}  # one core per page; pages run in parallel
    command = [exe, "stdin", "stdout", "-l", lang, "--psm", str(psm), "--dpi", str(dpi), "tsv"]
    try:
        done = subprocess.run(
            command,
            input=buffer.getvalue(),
            capture_output=True,
            timeout=limits.ocr_s,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise OcrUnavailable(f"tesseract ran past {limits.ocr_s:g} s on page {page}") from None
    if done.returncode != 0:
        why = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no message"]
        raise OcrUnavailable(f"tesseract failed on page {page}: {why[0]}")
    return done.stdout.decode("utf-8", "replace")


def _binarized(gray: Image.Image) -> Image.Image:
    """Black where darker than 80% of the paper (the 90th percentile of brightness)."""
    import numpy as np
    from PIL import Image as PILImage

    pixels = np.asarray(gray)
    paper = float(np.percentile(pixels, 90))
    return PILImage.fromarray(np.where(pixels < 0.8 * paper, 0, 255).astype(np.uint8))


def parse_tsv(
    tsv: str, factor: int = 1, limits: Limits = DEFAULT_LIMITS
) -> tuple[list[Word], bool]:
    """Words of Tesseract's TSV output (level 5 rows with text), boxes divided by `factor`;
    line ids number (block, paragraph, line) in order of appearance. Returns (words, truncated)."""
    words: list[Word] = []
    lines: dict[tuple[str, str, str], int] = {}
    for row in tsv.splitlines()[1:]:
        cols = row.split("\t")
        if len(cols) < 12 or cols[0] != "5" or not cols[11].strip():
            continue
        if len(words) >= limits.max_words:
            return words, True
        left, top, w, h = (int(c) for c in cols[6:10])
        line = lines.setdefault((cols[2], cols[3], cols[4]), len(lines))
        conf = float(cols[10])
        words.append(
            Word(
                cols[11].strip()[: limits.max_word_chars],
                (left // factor, top // factor, -(-(left + w) // factor), -(-(top + h) // factor)),
                max(0.0, min(1.0, conf / 100)) if conf >= 0 else None,
                line,
            )
        )
    return words, False
