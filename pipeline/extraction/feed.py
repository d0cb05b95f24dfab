"""A document's tiles as extraction takes them: page by page, lazily, within the document's
token budget, through the same `tiling.tile_document` loop that `docextract tiles` shows."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import Protocol

from PIL import Image

from pipeline.geometry import ImageGeometry
from pipeline.prompts import tile_note
from pipeline.settings import TilingSettings
from pipeline.tiling import open_page, tile_document
from pipeline.types import PageImage, Tile


class PageSource(Protocol):
    """Pages to read: a list, or a `PageStream` still rendering (len is the page count)."""

    def __iter__(self) -> Iterator[PageImage]: ...

    def __len__(self) -> int: ...


class TileFeed:
    """Tiles page by page (only the pages of the tiles in flight are in memory), each with the
    note that tells the model what part it is and its place in the document. `seen` lists the
    pages read so far, in reading order; `exhausted` is True once every page is read and every
    tile handed out."""

    def __init__(self, pages: PageSource, settings: TilingSettings, geometry: ImageGeometry):
        self.seen: list[int] = []
        self.exhausted = False
        self._pages = iter(pages)
        # a PageStream says whether its next page is rendered; a list always has it
        self._ready: Callable[[int], bool] | None = getattr(pages, "ready", None)
        self._tiled = tile_document(self._read(), len(pages), settings, geometry)
        self._queued: deque[tuple[Tile, str]] = deque()
        self._handed = 0

    def next(self, wait: bool) -> tuple[Tile, str, int] | None:
        """The next tile, its note and its place; None at the end, or, unless `wait`, when the
        next page is still rendering (so the tiles at hand go to the model instead of waiting)."""
        while not self._queued:
            if self.exhausted:
                return None
            if not wait and self._ready is not None and not self._ready(len(self.seen)):
                return None
            tiles = next(self._tiled, None)
            if tiles is None:
                self.exhausted = True
                return None
            parts = sum(not t.is_global for t in tiles)
            for part, tile in enumerate(tiles, start=1):
                note = tile_note(part, parts, tile.page, is_global=tile.is_global)
                self._queued.append((tile, note))
        tile, note = self._queued.popleft()
        self._handed += 1
        return tile, note, self._handed

    def _read(self) -> Iterator[tuple[int, Image.Image]]:
        for page in self._pages:
            self.seen.append(page.number)
            if page.blank:  # set aside by the pages stage: no tiles, no model call
                continue
            yield page.number, open_page(page)
