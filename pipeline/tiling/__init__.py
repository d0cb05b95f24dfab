"""Tiling: how a page becomes the images the model reads, each with its box and its image-token
cost known before any model runs.

- `page`: `tile_page` (one page within its budget) and `tile_document` (a document's pages
  within the document budget): the one budget loop that extraction and `docextract tiles` share.
- `plan`: what every strategy shares (strategy names, tile plans, the whole-page view, budgets).
- `auto`, `grid`: the strategies that cut tiles; `textsize`: the x-height and ink rows they read.
- `inspect`: what the vision tower receives, for `docextract tiles` and the legibility bench.
"""

from pipeline.tiling.page import DocumentBudget, open_page, tile_document, tile_page
from pipeline.tiling.plan import (
    STRATEGIES,
    check_strategy,
    page_budget,
    whole_page_tiles,
    whole_page_tokens,
)

__all__ = [
    "STRATEGIES",
    "DocumentBudget",
    "check_strategy",
    "open_page",
    "page_budget",
    "tile_document",
    "tile_page",
    "whole_page_tiles",
    "whole_page_tokens",
]
