"""Page -> tiles, and the image-token cost of each tile before any model runs.

Strategies (`TilingSettings.strategy`):
- `anyres`: the whole page as one image; the processor shrinks it to its largest pinpoint
  (672 px a side), so an A4 page at 200 DPI reaches the vision tower at about 57 DPI.
- `grid`: `grid_rows` x `grid_cols` overlapping tiles over the page, each widened to the shape of
  the nearest grid pinpoint (`pipeline.gridtile`).
- `auto`: tiles sized from the page's measured small print, covering only the rows that hold
  ink (`pipeline.autotile`).

Every `grid`/`auto` tile is cut at native resolution and resized to exactly one of the
checkpoint's `image_grid_pinpoints`, so the processor neither resizes nor pads it again, and
`anyres_image_tokens` (the processor's own count, see shared notes llava-next.md section 1.4)
gives its cost in advance. Budgets (per page, per document) are in those image tokens.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import get_args

from PIL import Image

from pipeline.backends import DEFAULT_GRID_PINPOINTS, ImageGeometry
from pipeline.errors import ConfigError
from pipeline.settings import TilingSettings
from pipeline.types import Tile

log = logging.getLogger(__name__)

Pinpoint = tuple[int, int]  # (height, width) in pixels of the vision tower's input


STRATEGIES: tuple[str, ...] = get_args(TilingSettings.model_fields["strategy"].annotation)


def check_strategy(name: str) -> str:
    """`name` if it is a tiling strategy; raises ConfigError naming the known ones otherwise."""
    if name not in STRATEGIES:
        raise ConfigError(
            f"Unknown tiling strategy {name!r}: use one of {', '.join(STRATEGIES)} "
            "(--tiling, DOCEXTRACT_TILING__STRATEGY)."
        )
    return name


@dataclass(frozen=True)
class TilePlan:
    """Where one tile goes: `box` in page pixels (it may reach past the page edge, which is
    filled white), and the pinpoint `(height, width)` it is resized to; same aspect ratio."""

    box: tuple[float, float, float, float]
    pinpoint: Pinpoint


def select_best_resolution(
    height: int, width: int, pinpoints: Sequence[tuple[int, int]]
) -> tuple[int, int]:
    """The (height, width) pinpoint LLaVA-NeXT resizes an image of this size into."""
    best: tuple[int, int] = tuple(pinpoints[0])  # type: ignore[assignment]
    best_effective, best_wasted = -1, float("inf")
    for pin_h, pin_w in pinpoints:
        scale = min(pin_w / width, pin_h / height)
        down_w, down_h = int(width * scale), int(height * scale)
        effective = min(down_w * down_h, width * height)
        wasted = pin_w * pin_h - effective
        if effective > best_effective or (effective == best_effective and wasted < best_wasted):
            best, best_effective, best_wasted = (pin_h, pin_w), effective, wasted
    return best


def anyres_image_tokens(width: int, height: int, geometry: ImageGeometry | None = None) -> int:
    """Image tokens LlavaNextProcessor inserts for one image of `width` x `height` pixels.

    Unpadded tile features plus one newline token per feature row plus the global view,
    for the "default" feature strategy (CLS dropped).
    """
    geometry = geometry or ImageGeometry()
    tile, side = geometry.tile_size, geometry.tile_size // geometry.patch_size
    best_h, best_w = select_best_resolution(height, width, geometry.grid_pinpoints)
    rows, cols = side * (best_h // tile), side * (best_w // tile)
    if width / height > cols / rows:
        rows -= 2 * ((rows - int(round(height * cols / width, 7))) // 2)
    else:
        cols -= 2 * ((cols - int(round(width * rows / height, 7))) // 2)
    return rows * cols + rows + side * side


def whole_page_scale(width: int, height: int, geometry: ImageGeometry) -> float:
    """How much the processor shrinks a whole page of this size (pixels) for the vision tower."""
    pin_h, pin_w = select_best_resolution(height, width, geometry.grid_pinpoints)
    return min(pin_w / width, pin_h / height)


def whole_page_size(width: int, height: int, settings: TilingSettings) -> tuple[int, int]:
    """The size the page is handed to the processor at in the `anyres` strategy."""
    scale = min(1.0, settings.max_side_px / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def whole_page_tokens(
    width: int, height: int, settings: TilingSettings, geometry: ImageGeometry
) -> int:
    """Image tokens of the whole page as one image (the `anyres` cost of the page)."""
    return anyres_image_tokens(*whole_page_size(width, height, settings), geometry)


def whole_page_tiles(
    page_number: int,
    image: Image.Image,
    settings: TilingSettings,
    geometry: ImageGeometry | None = None,
    *,
    is_global: bool = False,
) -> list[Tile]:
    """The `anyres` strategy: the whole page as one tile, downscaled to `max_side_px`.

    The processor shrinks the page to its pinpoint (672 px at most on a side) anyway; handing it
    a smaller image costs nothing in legibility and keeps preprocessing memory bounded.
    """
    geometry = geometry or ImageGeometry(grid_pinpoints=DEFAULT_GRID_PINPOINTS)
    box = (0, 0, image.width, image.height)
    size = whole_page_size(image.width, image.height, settings)
    if size != image.size:
        image = image.resize(size, Image.Resampling.LANCZOS)
    if image.mode != "RGB":
        image = image.convert("RGB")
    tokens = anyres_image_tokens(image.width, image.height, geometry)
    return [Tile(page=page_number, box=box, image=image, image_tokens=tokens, is_global=is_global)]


def page_budget(width: int, height: int, settings: TilingSettings, geometry: ImageGeometry) -> int:
    """Most image tokens one page may cost: `page_token_budget`, else `page_budget_vs_anyres`
    times the page's whole-page (`anyres`) cost, plus that cost again for the global view when
    it is on (so turning it on does not shrink the tiles)."""
    if settings.page_token_budget is not None:
        return settings.page_token_budget
    whole = whole_page_tokens(width, height, settings, geometry)
    extra = whole if settings.global_view else 0
    return math.floor(settings.page_budget_vs_anyres * whole) + extra


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
    # Imported here, not above: both strategy modules import this one.
    from pipeline.autotile import auto_plan
    from pipeline.gridtile import grid_plan

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


def pinpoint_tokens(pinpoint: Pinpoint, geometry: ImageGeometry) -> int:
    """Image tokens of an image exactly the size of `pinpoint` (height, width)."""
    return anyres_image_tokens(pinpoint[1], pinpoint[0], geometry)


def plan_tokens(plans: Sequence[TilePlan], geometry: ImageGeometry) -> int:
    return sum(pinpoint_tokens(plan.pinpoint, geometry) for plan in plans)


def place(start: float, size: float, limit: float) -> float:
    """`start` moved so that [start, start + size] lies inside [0, limit], or is centred on it
    when `size` is larger than `limit`."""
    if size >= limit:
        return (limit - size) / 2
    return min(max(start, 0.0), limit - size)


def render_tile(
    page_number: int, page: Image.Image, plan: TilePlan, geometry: ImageGeometry
) -> Tile:
    """The tile image for `plan`: the box cut from the page at native resolution (white past
    the page edge), resized to exactly the plan's pinpoint. `Tile.box` is the part of the page
    it shows, clipped to the page, in whole pixels."""
    left, top, right, bottom = (round(v) for v in plan.box)
    visible = (max(left, 0), max(top, 0), min(right, page.width), min(bottom, page.height))
    if visible == (left, top, right, bottom):
        region = page.crop(visible)
    else:
        region = Image.new(page.mode, (right - left, bottom - top), "white")
        region.paste(page.crop(visible), (visible[0] - left, visible[1] - top))
    pin_h, pin_w = plan.pinpoint
    image = region.resize((pin_w, pin_h), Image.Resampling.LANCZOS)
    if image.mode != "RGB":  # a greyscale page's tile
        image = image.convert("RGB")
    return Tile(
        page=page_number,
        box=visible,
        image=image,
        image_tokens=pinpoint_tokens(plan.pinpoint, geometry),
    )
