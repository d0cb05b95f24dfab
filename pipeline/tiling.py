"""Page -> tiles, and the image-token cost of each tile before any model runs.

`anyres_image_tokens` reproduces LlavaNextProcessor's count exactly (see
shared notes, llava-next.md section 1.4), so budgets are known before generation.
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image

from pipeline.backends import DEFAULT_GRID_PINPOINTS, ImageGeometry
from pipeline.settings import TilingSettings
from pipeline.types import Tile


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


def whole_page_tiles(
    page_number: int,
    image: Image.Image,
    settings: TilingSettings,
    geometry: ImageGeometry | None = None,
) -> list[Tile]:
    """The `anyres` strategy: the whole page as one tile, downscaled to `max_side_px`.

    The processor shrinks the page to its pinpoint (672 px at most on a side) anyway; handing it
    a smaller image costs nothing in legibility and keeps preprocessing memory bounded.
    """
    geometry = geometry or ImageGeometry(grid_pinpoints=DEFAULT_GRID_PINPOINTS)
    box = (0, 0, image.width, image.height)
    scale = min(1.0, settings.max_side_px / max(image.width, image.height))
    if scale < 1.0:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS)
    tokens = anyres_image_tokens(image.width, image.height, geometry)
    return [Tile(page=page_number, box=box, image=image, image_tokens=tokens)]


def tile_page(
    page_number: int, image: Image.Image, settings: TilingSettings, geometry: ImageGeometry
) -> list[Tile]:
    """Cut one page into the tiles the model is prompted with, by `settings.strategy`."""
    return whole_page_tiles(page_number, image, settings, geometry)
