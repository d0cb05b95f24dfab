"""A page's ink at a working resolution of about 100 DPI: what the blank and orientation
measures read. The ink rule is the tiler's (`tiling.textsize.ink_mask`: darker than 60% of the
local background, so grey paper and uneven light are not ink), with runs touching the sheet's
edge removed (scanner shadows, the dark wedges of a tilted scan)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from pipeline.tiling.textsize import ink_mask, without_border_runs

WORKING_DPI = 100  # small print keeps ~5 px of x-height; a page costs ~1 Mpx


@dataclass(frozen=True)
class Ink:
    """Boolean ink mask of a page (True = ink) and the DPI it is measured at."""

    mask: np.ndarray
    dpi: float


def page_ink(image: Image.Image, dpi: int, working_dpi: int = WORKING_DPI) -> Ink:
    """The ink of a page image (any mode) rendered at `dpi`, reduced to about `working_dpi`."""
    grey = image if image.mode == "L" else image.convert("L")
    factor = max(1, round(dpi / working_dpi))
    if factor > 1:
        grey = grey.reduce(factor)  # box average: specks of one or two pixels fade
    return Ink(without_border_runs(ink_mask(np.asarray(grey))), dpi / factor)
