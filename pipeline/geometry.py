"""How LLaVA-NeXT's processor sees an image: tile size, grid pinpoints and the image-token count.

The bottom of the house: tiling (to plan tiles whose cost is known in advance) and every backend
(to report image tokens) use the same formula, so it lives below both. Pure Python, no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# The checkpoints' own grids, as (height, width); the mistral-7b grid is transformers' default.
DEFAULT_GRID_PINPOINTS: tuple[tuple[int, int], ...] = (
    (336, 672),
    (672, 336),
    (672, 672),
    (1008, 336),
    (336, 1008),
)


@dataclass(frozen=True)
class ImageGeometry:
    """How the checkpoint's processor cuts an image: tile side and grid pinpoints (h, w)."""

    tile_size: int = 336
    patch_size: int = 14
    grid_pinpoints: tuple[tuple[int, int], ...] = DEFAULT_GRID_PINPOINTS


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
