"""The `auto` tiling strategy: tiles sized so the page's small print stays legible.

1. Measure the page (`pipeline.tiling.textsize`): the x-height of its small print, the height of
   a text line, and the bands of rows that hold ink.
2. The scale the vision tower needs: `target_x_height_px` (for a 336 px tile; scaled with the
   model's tile size) over the measured x-height, never above native resolution. If the
   processor's own whole-page resize already reaches it, the page is one `anyres` tile.
3. Cover the ink bands, top to bottom, with rows of tiles. A row is one pinpoint shape (say
   672x672, or 336x1008 for a wide strip) at that scale, repeated across the content width
   (one tile unless the content is wider than the pinpoint at that scale). A dynamic programme
   picks the row shapes that cover every band at the least token cost; a row starts half a line
   above the first band it must show, a band a row would cut is shown whole by the next row, and
   blank stretches between bands are skipped. Dense pages get more rows than sparse ones.
   A row never ends right after a band that heads what follows (`_heads`): a table's header row
   starts the same tile as its first rows, a heading the same tile as its text.
4. Each single-tile row is then shrunk around its ink (same shape, so same cost): what it shows
   gets larger than the target for free.
5. Over budget: the scale steps down 5% at a time until the cover fits; once tiles would show
   the page less than 15% larger than the processor's whole-page resize, the page falls back to
   one `anyres` tile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from PIL import Image

from pipeline.geometry import ImageGeometry, whole_page_scale
from pipeline.settings import TilingSettings
from pipeline.tiling.plan import Pinpoint, TilePlan, pinpoint_tokens, place, plan_tokens
from pipeline.tiling.textsize import TextMeasure, measure_text
from pipeline.types import Box

REFERENCE_TILE_PX = 336  # `target_x_height_px` is given for CLIP-L/14 at 336 px tiles
MAX_SCALE = 1.0  # never enlarge: upscaling adds tokens, not information
_MAX_COLUMNS = 4
_SCALE_STEP = 0.95
# Tiles must show the page at least this much larger than the whole-page view to be worth
# their extra tokens; below it the page is read whole.
_MIN_GAIN = 1.15
# A band this many times farther from the band above than from the band below heads what follows.
_HEAD_GAP_RATIO = 1.5


@dataclass(frozen=True)
class _RowShape:
    pinpoint: Pinpoint
    columns: int
    width: float  # of one tile, page px
    height: float  # page px
    cost: int  # image tokens of the whole row


def auto_plan(
    image: Image.Image, settings: TilingSettings, geometry: ImageGeometry, budget: int
) -> list[TilePlan] | None:
    """Tiles for one page image, within `budget` image tokens; None: use the whole page."""
    return plan_from_measure(measure_text(image), image.size, settings, geometry, budget)


def target_scale(x_height: float, settings: TilingSettings, geometry: ImageGeometry) -> float:
    """Page -> encoder scale at which print of `x_height` page px reaches
    `target_x_height_px` (never above native resolution)."""
    target = settings.target_x_height_px * geometry.tile_size / REFERENCE_TILE_PX
    return min(MAX_SCALE, target / x_height)


def plan_from_measure(
    measure: TextMeasure,
    size: tuple[int, int],
    settings: TilingSettings,
    geometry: ImageGeometry,
    budget: int,
) -> list[TilePlan] | None:
    """`auto_plan` on a page already measured; `size` is the page's (width, height) in px."""
    if measure.x_height is None or not measure.bands:
        return None  # no text found: the whole page is the safe reading
    floor = whole_page_scale(*size, geometry) * _MIN_GAIN
    scale = target_scale(measure.x_height, settings, geometry)
    while scale > floor:
        plans = cover(measure, size, scale, geometry)
        if plans is not None and plan_tokens(plans, geometry) <= budget:
            return plans
        scale *= _SCALE_STEP
    return None


def cover(
    measure: TextMeasure, size: tuple[int, int], scale: float, geometry: ImageGeometry
) -> list[TilePlan] | None:
    """The cheapest rows of tiles at `scale` that show every ink band whole (None: none do)."""
    line = measure.line_height or 0.0
    margin = line / 2
    left = min(b[0] for b in measure.bands) - margin
    right = max(b[2] for b in measure.bands) + margin
    shapes = _row_shapes(right - left, scale, line, geometry)
    if not shapes:
        return None
    tallest = max(s.height for s in shapes)
    bands = _split_tall(measure.bands, tallest - 2 * margin - line, line)
    # Where no row can hold a heading with what follows, the heading may end a row after all.
    choice = _cheapest_rows(bands, shapes, margin, _heads(bands))
    if choice is None:
        choice = _cheapest_rows(bands, shapes, margin, [False] * len(bands))
    if choice is None:
        return None
    plans: list[TilePlan] = []
    for first, shape, end in choice:
        plans += _place_row(bands[first:end], shape, (left, right), size, margin)
    return plans


def _row_shapes(span: float, scale: float, line: float, geometry: ImageGeometry) -> list[_RowShape]:
    """Every pinpoint as a row across `span` page px at `scale`, with the columns it needs."""
    shapes = []
    for pin_h, pin_w in geometry.grid_pinpoints:
        width, height = pin_w / scale, pin_h / scale
        # Side by side, tiles overlap by a few words so no number is cut in both.
        overlap = min(width / 2, max(0.1 * width, 4 * line))
        columns = 1 if width >= span else math.ceil((span - overlap) / (width - overlap))
        if columns <= _MAX_COLUMNS:
            cost = columns * pinpoint_tokens((pin_h, pin_w), geometry)
            shapes.append(_RowShape((pin_h, pin_w), columns, width, height, cost))
    return shapes


def _split_tall(bands: tuple[Box, ...], limit: float, line: float) -> list[Box]:
    """Bands taller than `limit` cut into overlapping pieces (by a line) that fit a row."""
    pieces: list[Box] = []
    step = max(limit - line, line, 1.0)
    for left, top, right, bottom in bands:
        if bottom - top <= limit:
            pieces.append((left, top, right, bottom))
            continue
        start = float(top)
        while start + limit < bottom:
            pieces.append((left, round(start), right, round(start + limit)))
            start += step
        pieces.append((left, round(max(start, top)), right, bottom))
    return pieces


def _heads(bands: list[Box]) -> list[bool]:
    """For each band, whether it heads the band below: set off from the band above by a gap at
    least `_HEAD_GAP_RATIO` times the one below, like an invoice's line-item header row (bold or
    shaded, its own gap above, its rows close below) or a caption over its block. The pieces of a
    split band overlap (no gap below) and head nothing; nor does the first band of the page."""
    heads = [False] * len(bands)
    for k in range(1, len(bands) - 1):
        above = bands[k][1] - bands[k - 1][3]
        below = bands[k + 1][1] - bands[k][3]
        heads[k] = below > 0 and above >= _HEAD_GAP_RATIO * below
    return heads


def _cheapest_rows(
    bands: list[Box], shapes: list[_RowShape], margin: float, heads: list[bool]
) -> list[tuple[int, _RowShape, int]] | None:
    """Rows `(first band, shape, end band)` covering every band at the least token cost
    (ties: fewer tiles). A row starts `margin` above its first band and shows each band whose
    bottom is `margin` above the row's bottom; it does not end after a band that `heads` the
    next (it ends before it instead)."""
    count = len(bands)
    best: list[tuple[int, int] | None] = [None] * count + [(0, 0)]
    step: list[tuple[_RowShape, int] | None] = [None] * count
    for first in reversed(range(count)):
        top = bands[first][1] - margin
        for shape in shapes:
            end = first
            while end < count and bands[end][3] + margin <= top + shape.height:
                end += 1
            while first < end < count and heads[end - 1]:
                end -= 1
            rest = best[end]
            if end == first or rest is None:
                continue
            candidate = (shape.cost + rest[0], shape.columns + rest[1])
            current = best[first]
            if current is None or candidate < current:
                best[first], step[first] = candidate, (shape, end)
    rows, first = [], 0
    while first < count:
        chosen = step[first]
        if chosen is None:
            return None
        rows.append((first, chosen[0], chosen[1]))
        first = chosen[1]
    return rows


def _place_row(
    bands: list[Box],
    shape: _RowShape,
    span: tuple[float, float],
    size: tuple[int, int],
    margin: float,
) -> list[TilePlan]:
    """The tiles of one row showing `bands`: spread across `span` if several, else one tile
    shrunk around the bands' ink (same shape, larger scale, same cost)."""
    page_w, page_h = size
    pin_h, pin_w = shape.pinpoint
    top = bands[0][1] - margin
    if shape.columns > 1:
        row_top = place(top, shape.height, page_h)
        step = (span[1] - span[0] - shape.width) / (shape.columns - 1)
        return [
            TilePlan(
                (
                    span[0] + k * step,
                    row_top,
                    span[0] + k * step + shape.width,
                    row_top + shape.height,
                ),
                shape.pinpoint,
            )
            for k in range(shape.columns)
        ]
    ink_left = min(b[0] for b in bands) - margin
    ink_right = max(b[2] for b in bands) + margin
    ink_bottom = bands[-1][3] + margin
    width = max(ink_right - ink_left, (ink_bottom - top) * pin_w / pin_h, pin_w / MAX_SCALE)
    width = min(width, shape.width)
    height = width * pin_h / pin_w
    left = place((ink_left + ink_right - width) / 2, width, page_w)
    row_top = place(top, height, page_h)
    return [TilePlan((left, row_top, left + width, row_top + height), shape.pinpoint)]
