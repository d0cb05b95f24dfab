"""A document's pages while they are being rendered: extraction starts with the first page.

`PageStream` runs `rasterize` in a background thread and hands its pages out as they reach the
page cache. Iterating waits for pages that are not rendered yet and can be repeated (a second
schema reads the same pages again); `result()` gives the finished `RasterResult` (page count,
pages, page errors) or raises the `InputError` that ended rendering.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

from pipeline.render.raster import RasterResult
from pipeline.types import PageImage

Render = Callable[[Callable[[PageImage, int], None]], RasterResult]


class PageStream:
    """Pages of one document as `render(on_page)` produces them, in rendering order."""

    def __init__(
        self, render: Render, on_done: Callable[[RasterResult], None] | None = None
    ) -> None:
        """Start `render(on_page)` in a thread; `on_done(result)` runs there when it succeeds
        (its exceptions are the caller's to handle: it should not raise)."""
        self._pages: list[PageImage] = []
        self._page_count: int | None = None
        self._result: RasterResult | None = None
        self._error: BaseException | None = None
        self._done = False
        self.seconds = 0.0  # how long rendering took, once done
        self._changed = threading.Condition()
        self._on_done = on_done
        self._thread = threading.Thread(
            target=self._run, args=(render,), name="docextract-render", daemon=True
        )
        self._thread.start()

    def _run(self, render: Render) -> None:
        started = time.perf_counter()
        try:
            result = render(self._add)
        except BaseException as exc:  # a thread boundary: handed to the consumer, raised there
            with self._changed:
                self._error, self._done = exc, True
                self._changed.notify_all()
            return
        with self._changed:
            self._result, self._done = result, True
            self.seconds = time.perf_counter() - started
            self._changed.notify_all()
        if self._on_done is not None:
            self._on_done(result)

    def _add(self, page: PageImage, page_count: int) -> None:
        with self._changed:
            self._pages.append(page)
            self._page_count = page_count
            self._changed.notify_all()

    def __len__(self) -> int:
        """The document's page count, known with the first page (waits for it)."""
        with self._changed:
            while self._page_count is None and not self._done:
                self._changed.wait()
            if self._page_count is not None:
                return self._page_count
            return self._result.page_count if self._result is not None else 0

    def ready(self, index: int) -> bool:
        """Whether reading page `index` (0-based, in rendering order) would not wait: it is
        rendered, or rendering has ended."""
        with self._changed:
            return index < len(self._pages) or self._done

    def __iter__(self) -> Iterator[PageImage]:
        """Every page, waiting for each; raises what ended rendering, after the pages it gave."""
        index = 0
        while True:
            with self._changed:
                while index >= len(self._pages) and not self._done:
                    self._changed.wait()
                if index < len(self._pages):
                    page = self._pages[index]
                elif self._error is not None:
                    raise self._error
                else:
                    return
            index += 1
            yield page

    def result(self) -> RasterResult:
        """The finished rendering (waits for it). Raises what ended it, e.g. an InputError."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result
