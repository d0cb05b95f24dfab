"""The parts every tiling strategy shares: strategy names, tile plans, the whole-page view,
page budgets in image tokens, and cutting a planned tile out of the page."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import get_args

from PIL import Image

from pipeline.errors import ConfigError
from pipeline.geometry import (
    DEFAULT_GRID_PINPOINTS,
    ImageGeometry,
    anyres_image_tokens,
)
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
