"""The `grid` tiling strategy: `grid_rows` x `grid_cols` overlapping tiles over the page.

Each cell is widened (never narrowed) to the shape of the grid pinpoint nearest its own, so that
the processor neither pads nor squeezes it; tiles may then overlap more than `overlap`.
"""

from __future__ import annotations

import logging
import math

from pipeline.geometry import ImageGeometry
from pipeline.settings import TilingSettings
from pipeline.tiling.plan import Pinpoint, TilePlan, place, plan_tokens

log = logging.getLogger(__name__)


def grid_plan(
    width: int, height: int, settings: TilingSettings, geometry: ImageGeometry, budget: int
) -> list[TilePlan] | None:
    """`grid_rows` x `grid_cols` tiles over the page; fewer columns (then rows) if the budget
    says so.

    Neighbours overlap by `overlap` of a cell; each cell is then widened (never narrowed) to the
    pinpoint shape nearest its own, so tiles may overlap more. None: not even one row fits the
    budget; use the whole page.
    """
    rows, cols = settings.grid_rows, settings.grid_cols
    while True:
        plans = _grid(width, height, rows, cols, settings.overlap, geometry)
        if plan_tokens(plans, geometry) <= budget:
            if (rows, cols) != (settings.grid_rows, settings.grid_cols):
                log.info("grid reduced to %dx%d to fit %d image tokens", rows, cols, budget)
            return plans
        if rows * cols == 1:
            return None
        # Columns go first: a vertical cut splits every line it crosses, a horizontal one
        # falls between lines.
        rows, cols = (rows, cols - 1) if cols > 1 else (rows - 1, cols)


def _grid(
    width: int, height: int, rows: int, cols: int, overlap: float, geometry: ImageGeometry
) -> list[TilePlan]:
    cell_w = width / (cols - (cols - 1) * overlap)
    cell_h = height / (rows - (rows - 1) * overlap)
    pin_h, pin_w = nearest_pinpoint(cell_w, cell_h, geometry)
    box_w, box_h = max(cell_w, cell_h * pin_w / pin_h), max(cell_h, cell_w * pin_h / pin_w)
    plans = []
    for row in range(rows):
        for col in range(cols):
            centre_x = cell_w / 2 + col * cell_w * (1 - overlap)
            centre_y = cell_h / 2 + row * cell_h * (1 - overlap)
            left = place(centre_x - box_w / 2, box_w, width)
            top = place(centre_y - box_h / 2, box_h, height)
            plans.append(TilePlan((left, top, left + box_w, top + box_h), (pin_h, pin_w)))
    return plans


def nearest_pinpoint(width: float, height: float, geometry: ImageGeometry) -> Pinpoint:
    """The pinpoint whose aspect ratio is nearest (in log scale) to `width` x `height`; of two
    equally near, the larger."""
    ratio = math.log(height / width)
    return min(
        geometry.grid_pinpoints,
        key=lambda p: (round(abs(math.log(p[0] / p[1]) - ratio), 9), -p[0] * p[1]),
    )
