"""What the OCR vote reads on the copies of bench/orientation.py that text, ink and OSD leave
unsure: per copy and turn, the words Tesseract reads (text, confidence), at the vote's DPI and,
where the vote is unsure, at HIGH_DPI and straightened. For choosing the vote's rules from data.

    DOCEXTRACT_SHARED=/work/shared .venv/bin/python bench/orientation_vote.py OUT.json
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import orientation as bench  # bench/orientation.py
from PIL import Image

import pipeline.pages.orientation as orientation
from pipeline.evidence.words import Word
from pipeline.pages import ocrvote
from pipeline.pages.guess import Guess
from pipeline.pages.ink import page_ink
from pipeline.settings import PagesSettings


def reads(
    image: Image.Image, dpi: int, vote_dpi: int, straighten: bool = False
) -> dict[int, list[tuple[str, float]]]:
    """The words (text, confidence) Tesseract reads at each turn, as the vote reads them."""
    gray = image.convert("L")
    if dpi != vote_dpi:
        size = (round(image.width * vote_dpi / dpi), round(image.height * vote_dpi / dpi))
        gray = gray.resize(size, Image.Resampling.LANCZOS)
    out = {}
    for turn in ocrvote.TURNS:
        turned = gray.rotate(-turn, expand=True) if turn else gray
        if straighten:
            skew = orientation.measure_skew(page_ink(turned, vote_dpi), 5.0)
            turned = turned.rotate(skew, Image.Resampling.BICUBIC, expand=True, fillcolor=255)
        out[turn] = [(w.text, w.confidence or 0.0) for w in ocrvote._read(turned, 0, vote_dpi)]
    return out


def _words(read: list[tuple[str, float]]) -> tuple[Word, ...]:
    return tuple(Word(text, (0, 0, 0, 0), confidence) for text, confidence in read)


def main() -> None:
    out = Path(sys.argv[1])
    with tempfile.TemporaryDirectory() as layouts:
        pages = list(bench.sample_pages(Path(layouts))) + list(bench.corpus_pages())
        items = list(bench.copies(pages))
    asked: list[bool] = []
    orientation.ocr_vote = lambda image, dpi: asked.append(True)  # type: ignore[assignment]
    settings = PagesSettings(orientation="auto")
    records = []
    for n, item in enumerate(items):
        asked.clear()
        guess: Guess = orientation.orient(item.image, item.dpi, settings, item.text)
        if not asked:
            continue
        read = {"150": reads(item.image, item.dpi, ocrvote.VOTE_DPI)}
        scores = {t: ocrvote.confident_letters(_words(r)) for t, r in read["150"].items()}
        if ocrvote.decide(scores).by != "ocr":
            read["300"] = reads(item.image, item.dpi, ocrvote.HIGH_DPI)
            read["150s"] = reads(item.image, item.dpi, ocrvote.VOTE_DPI, straighten=True)
        tilted = item.skew is not None
        records.append(
            {
                "name": item.name,
                "kind": item.kind,
                "want": item.want,
                "tilted": tilted,
                "reads": read,
            }
        )
        print(n, item.name, item.want, guess.by, scores, file=sys.stderr, flush=True)
        out.write_text(json.dumps(records))


if __name__ == "__main__":
    main()
