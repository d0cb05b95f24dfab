"""A multi-page file's split, from its rendered pages and their words (and the model, asked
through `ask` about the pages the words leave unsure)."""

from __future__ import annotations

from collections.abc import Callable

from pipeline.render.raster import RasterResult
from pipeline.render.words import DocumentWords
from pipeline.settings import SplitSettings
from pipeline.split.boundaries import Boundary, decide_boundaries
from pipeline.split.parts import Split, split_at
from pipeline.split.signals import PageSignals, read_signals
from pipeline.types import PageImage

Ask = Callable[[Boundary, PageImage], Boundary]


def find_split(
    raster: RasterResult, words: DocumentWords, settings: SplitSettings, ask: Ask | None = None
) -> Split:
    """Where the documents in the file begin. A page that did not render or whose words could
    not be read gets no signal of its own (it continues the document before it, unsure)."""
    rendered = {page.number: page for page in raster.pages}
    read = {page_words.page: page_words for page_words in words.pages}
    signals = []
    for number in range(1, raster.page_count + 1):
        page = rendered.get(number)
        if page is not None and page.blank:
            signals.append(PageSignals(number, blank=True))
        elif page is None or number not in read:
            signals.append(PageSignals(number, readable=False))
        else:
            signals.append(read_signals(read[number]))
    boundaries = decide_boundaries(signals)
    if ask is not None:
        boundaries = [
            ask(b, rendered[b.page])
            if b.confidence < settings.min_confidence and b.page in rendered
            else b
            for b in boundaries
        ]
    blank = {s.page for s in signals if s.blank}
    return split_at(raster.page_count, blank, boundaries)
