"""Page -> tiles (`tile_page`), a document's pages within its budget (`tile_document`), and
the image-token cost of each tile before any model runs.

Strategies (`TilingSettings.strategy`):
- `anyres`: the whole page as one image; the processor shrinks it to its largest pinpoint
  (672 px a side), so an A4 page at 200 DPI reaches the vision tower at about 57 DPI.
- `grid`: `grid_rows` x `grid_cols` overlapping tiles over the page, each widened to the shape of
  the nearest grid pinpoint (`pipeline.tiling.grid`).
- `auto`: tiles sized from the page's measured small print, covering only the rows that hold
  ink (`pipeline.tiling.auto`).

Every `grid`/`auto` tile is cut at native resolution and resized to exactly one of the
checkpoint's `image_grid_pinpoints`, so the processor neither resizes nor pads it again, and
`anyres_image_tokens` (the processor's own count, see shared notes llava-next.md section 1.4)
gives its cost in advance. Budgets (per page, per document) are in those image tokens.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence

from PIL import Image

from pipeline.geometry import ImageGeometry
from pipeline.settings import TilingSettings
from pipeline.tiling.auto import auto_plan
from pipeline.tiling.grid import grid_plan
from pipeline.tiling.plan import page_budget, render_tile, whole_page_tiles, whole_page_tokens
from pipeline.types import PageImage, Tile

log = logging.getLogger(__name__)


def tile_page(
    page_number: int,
    image: Image.Image,
    settings: TilingSettings,
    geometry: ImageGeometry,
    budget: int | None = None,
) -> list[Tile]:
    """Cut page `page_number` (1-based) into the tiles the model is prompted with. `image` is RGB
    or greyscale ("L"); the tiles are RGB either way.

    `budget` (image tokens, default `page_budget`) bounds the sum of the tiles' tokens, global
    view included; the floor is the whole page as one tile, which no budget goes below.
    """
    if budget is None:
        budget = page_budget(image.width, image.height, settings, geometry)
    if settings.strategy == "anyres":
        return whole_page_tiles(page_number, image, settings, geometry)
    reserve = whole_page_tokens(image.width, image.height, settings, geometry)
    tiles_budget = budget - reserve if settings.global_view else budget
    if settings.strategy == "grid":
        plans = grid_plan(image.width, image.height, settings, geometry, tiles_budget)
    else:
        plans = auto_plan(image, settings, geometry, tiles_budget)
    if plans is None:
        return whole_page_tiles(page_number, image, settings, geometry)
    tiles = [render_tile(page_number, image, plan, geometry) for plan in plans]
    if settings.global_view:
        tiles += whole_page_tiles(page_number, image, settings, geometry, is_global=True)
    return tiles


class DocumentBudget:
    """Image tokens a document's pages may still spend, page by page, in page order.

    Each page may spend its own `page_budget`, and with `document_token_budget` set at most its
    fair share of what is left (left / pages still to come), so cheap pages leave room for
    dense ones. `page_count` is the number of pages that will be tiled.
    """

    def __init__(self, settings: TilingSettings, geometry: ImageGeometry, page_count: int) -> None:
        self.settings, self.geometry = settings, geometry
        self.pages_left = page_count
        self.spent = 0

    def for_page(self, width: int, height: int) -> int:
        """The budget of the next page, a `width` x `height` px image."""
        budget = page_budget(width, height, self.settings, self.geometry)
        if self.settings.document_token_budget is not None:
            left = self.settings.document_token_budget - self.spent
            budget = min(budget, left // max(1, self.pages_left))
        return budget

    def spend(self, page_number: int, tiles: Sequence[Tile], budget: int) -> None:
        """Record what page `page_number` cost; a page over its `budget` (the whole-page floor)
        is logged, not refused: it must still be read."""
        cost = sum(t.image_tokens for t in tiles)
        if cost > budget:
            log.warning(
                "page %d costs %d image tokens, over its budget of %d: the whole page as one "
                "image is the floor (raise DOCEXTRACT_TILING__DOCUMENT_TOKEN_BUDGET or "
                "PAGE_TOKEN_BUDGET)",
                page_number,
                cost,
                budget,
            )
        self.spent += cost
        self.pages_left -= 1


def tile_document(
    pages: Iterable[tuple[int, Image.Image]],
    page_count: int,
    settings: TilingSettings,
    geometry: ImageGeometry,
) -> Iterator[list[Tile]]:
    """The tiles of each `(page number, image)` in turn, lazily, within the document budget
    (`DocumentBudget`); `page_count` is the number of pages `pages` yields."""
    budget = DocumentBudget(settings, geometry, page_count)
    for number, image in pages:
        allowed = budget.for_page(image.width, image.height)
        tiles = tile_page(number, image, settings, geometry, allowed)
        budget.spend(number, tiles, allowed)
        yield tiles


def open_page(page: PageImage) -> Image.Image:
    """A cached page image as tiling takes it: greyscale pages stay greyscale ("L": measured
    and cut at a third of the cost of RGB, their tiles converted at their own small size, pixel
    for pixel the same), anything else RGB. Loaded fully, so the file is closed on return."""
    with Image.open(page.path) as image:
        image.load()
        return image if image.mode == "L" else image.convert("RGB")
