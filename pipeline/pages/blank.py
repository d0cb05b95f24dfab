"""Blank pages: separator sheets, empty backs of duplex scans, a scanner's noise.

Measured on the ink (`pages.ink`), never on the model: the page is cut into 2 mm cells; a cell
holds content when 4-60% of it is ink (fewer: a speck of dust or JPEG noise; more: a solid
fill, a punch hole, a black scanner edge), it touches no solid cell (the ragged boundary of a
dark edge or hole) and a neighbouring cell holds content too (text comes in words; specks come
alone). The page is blank when its content cells cover at most `blank_max_content_mm2`.
"""

from __future__ import annotations

import numpy as np

from pipeline.pages.ink import Ink

CELL_MM = 2.0
_MIN_SHARE, _SOLID_SHARE = 0.04, 0.6


def content_mm2(ink: Ink) -> float:
    """Area (mm²) of the page's content cells: text-like ink, with noise, fills and edges out."""
    cell = max(2, round(CELL_MM * ink.dpi / 25.4))
    height, width = ink.mask.shape
    rows, cols = height // cell, width // cell
    if rows == 0 or cols == 0:
        return 0.0
    cells = ink.mask[: rows * cell, : cols * cell].reshape(rows, cell, cols, cell)
    share = cells.mean(axis=(1, 3))
    solid = share > _SOLID_SHARE
    content = (share >= _MIN_SHARE) & ~solid & ~_near(solid)
    content &= _near(content, include_self=False)
    return float(content.sum()) * (cell * 25.4 / ink.dpi) ** 2


def is_blank(ink: Ink, max_content_mm2: float) -> tuple[bool, float]:
    """(blank, content area in mm²) of a page."""
    area = content_mm2(ink)
    return area <= max_content_mm2, round(area, 1)


def _near(cells: np.ndarray, include_self: bool = True) -> np.ndarray:
    """Cells with a True cell among their 8 neighbours (and themselves, if `include_self`)."""
    padded = np.pad(cells, 1)
    rows, cols = cells.shape
    found = np.zeros_like(cells)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            if (dy, dx) == (1, 1) and not include_self:
                continue
            found |= padded[dy : dy + rows, dx : dx + cols]
    return found
