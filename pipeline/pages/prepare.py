"""The pages stage on one rendered page: measure (blank, orientation, skew), turn the cached PNG
upright once, and keep what was found beside it.

The page cache holds the upright page, so every later reader (tiling, `docextract tiles`, the
review desk, grounding) sees the same pixels; `p0001-200dpi.page.json` beside the PNG keeps the
facts and the PNG's size and mtime, so a cached page is measured once and a page rendered again
(damaged on disk, say) is measured again. A page found blank is not turned.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import replace
from pathlib import Path

from PIL import Image

from pipeline.pages.blank import is_blank
from pipeline.pages.ink import page_ink
from pipeline.pages.orientation import measure_skew, orient
from pipeline.render.common import save_png
from pipeline.settings import PagesSettings
from pipeline.types import PageFacts, PageImage

FACTS_VERSION = 1
# clockwise turn -> the transpose that makes it (Pillow's ROTATE_n turns counter-clockwise)
_TRANSPOSE = {
    90: Image.Transpose.ROTATE_270,
    180: Image.Transpose.ROTATE_180,
    270: Image.Transpose.ROTATE_90,
}


def facts_path(page: PageImage) -> Path:
    """Where the facts of a cached page are kept: beside its PNG."""
    return page.path.with_name(page.path.stem + ".page.json")


def prepare_page(page: PageImage, settings: PagesSettings) -> PageImage:
    """`page` measured and, where needed, turned upright and straightened in the cache; its
    `facts`, size and `rotation` updated. Cached facts are reused. Raises OSError when the PNG
    cannot be read or written (the caller's page error)."""
    cached = _cached_facts(page)
    if cached is None:
        cached = _measure_and_fix(page, settings)
    facts, (width, height) = cached
    return replace(
        page,
        width=width,
        height=height,
        rotation=(page.rotation + facts.turned) % 360,
        facts=facts,
    )


def _measure_and_fix(page: PageImage, settings: PagesSettings) -> tuple[PageFacts, tuple[int, int]]:
    with Image.open(page.path) as opened:
        opened.load()
        image = opened if opened.mode in ("L", "RGB") else opened.convert("RGB")
    ink = page_ink(image, page.dpi)
    blank, area = is_blank(ink, settings.blank_max_content_mm2)
    if blank and settings.blank:
        facts = PageFacts(blank=True, content_mm2=area)
    else:
        guess = orient(image, page.dpi, settings, page.text)
        if guess.turn:
            image = image.transpose(_TRANSPOSE[guess.turn])
            ink = page_ink(image, page.dpi)
        skew = measure_skew(ink, settings.max_skew_deg) if settings.deskew else 0.0
        skew = skew if abs(skew) >= settings.min_skew_deg else 0.0
        if skew:
            white = 255 if image.mode == "L" else (255, 255, 255)
            image = image.rotate(skew, Image.Resampling.BICUBIC, fillcolor=white)
        if guess.turn or skew:
            save_png(image, page.path)
        facts = PageFacts(False, area, guess.turn, guess.by, guess.confidence, skew)
    _write_facts(page, facts, image.size)
    return facts, image.size


def _cached_facts(page: PageImage) -> tuple[PageFacts, tuple[int, int]] | None:
    try:
        data = json.loads(facts_path(page).read_text())
        stat = page.path.stat()
        if data.get("version") != FACTS_VERSION or data.get("png_mtime_ns") != stat.st_mtime_ns:
            return None  # the PNG was rendered again since: measure it again
        return PageFacts(**data["facts"]), (int(data["width"]), int(data["height"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_facts(page: PageImage, facts: PageFacts, size: tuple[int, int]) -> None:
    data = {
        "version": FACTS_VERSION,
        "facts": facts.to_json(),
        "width": size[0],
        "height": size[1],
        "png_mtime_ns": page.path.stat().st_mtime_ns,
    }
    target = facts_path(page)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, target)  # the PNG first, then its facts: a crash between measures again
