"""Pages: what happens to a rendered page before any tile is cut from it.

- `blank`: blank pages (separator sheets, empty duplex backs, scanner noise) found from the ink
  and set aside: no tiles, no model call; listed in the provenance.
- `orientation`: the page turned upright (0/90/180/270, by the text layer, the ink measure,
  Tesseract's OSD or, last, the OCR vote of `ocrvote`; `guess`: their common answer) and a small
  tilt straightened, on the cached PNG, so every later reader sees the upright page.
- `ink`: the page's ink at ~100 DPI that both read; `prepare`: the stage on one page, cached.
- `stage`: the stage over a document's rendering (streamed pages included) and its provenance.

Settings: `Settings.pages` (`PagesSettings`). Nothing here calls a model.
"""

from pipeline.pages.prepare import prepare_page
from pipeline.pages.stage import (
    all_blank_error,
    blank_pages,
    pages_provenance,
    prepare_raster,
    preparing,
)

__all__ = [
    "all_blank_error",
    "blank_pages",
    "pages_provenance",
    "prepare_page",
    "prepare_raster",
    "preparing",
]
