"""Blank pages: separator sheets, empty backs of duplex scans, a scanner's noise.

Measured on the ink (`pages.ink`), never on the model: the page is cut into 2 mm cells; a cell
holds content when 4-60% of it is ink (fewer: a speck of dust or JPEG noise; more: a solid
fill, a punch hole, a black scanner edge), it touches no solid cell (the ragged boundary of a
dark edge or hole) and two of its neighbours hold content too (a character spans a block of
cells; a speck, even one on a cell boundary, spans one or two). The page is blank when its
content cells cover at most `blank_max_content_mm2`.
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
    content &= _neighbours(content) >= 2
    return float(content.sum()) * (cell * 25.4 / ink.dpi) ** 2


def is_blank(ink: Ink, max_content_mm2: float) -> tuple[bool, float]:
    """(blank, content area in mm²) of a page."""
    area = content_mm2(ink)
    return area <= max_content_mm2, round(area, 1)


def _neighbours(cells: np.ndarray) -> np.ndarray:
    """How many of each cell's 8 neighbours are True."""
    padded = np.pad(cells, 1).astype(np.int8)
    rows, cols = cells.shape
    count = np.zeros(cells.shape, np.int8)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            if (dy, dx) != (1, 1):
                count += padded[dy : dy + rows, dx : dx + cols]
    return count


def _near(cells: np.ndarray) -> np.ndarray:
    """Cells that are True or have a True neighbour."""
    return cells | (_neighbours(cells) > 0)
