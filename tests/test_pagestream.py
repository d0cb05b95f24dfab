"""Pages reach extraction while the document is still rendering (`PageStream`)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import make_page

from pipeline.backends.scripted import ScriptedModel
from pipeline.errors import InputError
from pipeline.extraction import extract
from pipeline.finalize import finalize
from pipeline.render.pagestream import PageStream, Render
from pipeline.render.raster import RasterResult
from pipeline.settings import Settings
from pipeline.types import ErrorCategory, ErrorItem, PageImage, Status, VisionRequest
from schemas.invoice import Invoice

OnPage = Callable[[PageImage, int], None]


def test_the_first_page_is_read_before_the_last_one_renders(tmp_path: Path) -> None:
    pages = [make_page(tmp_path, n) for n in (1, 2)]
    first_read = threading.Event()

    def render(on_page: OnPage) -> RasterResult:
        on_page(pages[0], 2)
        # Rendering waits for the consumer: without streaming this would time out.
        assert first_read.wait(timeout=10), "page 1 was not handed out before rendering ended"
        on_page(pages[1], 2)
        return RasterResult(2, pages, [])

    stream = PageStream(render)
    assert len(stream) == 2
    read = []
    for page in stream:
        read.append(page.number)
        first_read.set()
    assert read == [1, 2]
    assert [p.number for p in stream] == [1, 2]  # a second schema reads the same pages again
    assert stream.result().page_count == 2
    assert stream.seconds > 0


def test_the_error_that_ends_rendering_reaches_the_reader_after_its_pages(tmp_path: Path) -> None:
    page = make_page(tmp_path, 1)

    def render(on_page: OnPage) -> RasterResult:
        on_page(page, 3)
        raise InputError(ErrorCategory.RENDER_TIMEOUT, "rendering took too long")

    stream = PageStream(render)
    read = []
    with pytest.raises(InputError, match="too long"):
        for p in stream:
            read.append(p.number)
    assert read == [1]
    with pytest.raises(InputError):
        stream.result()


def test_a_document_that_renders_nothing_has_length_zero_and_raises() -> None:
    def render(on_page: OnPage) -> RasterResult:
        raise InputError(ErrorCategory.ZERO_PAGES, "no pages")

    stream = PageStream(render)
    assert len(stream) == 0
    with pytest.raises(InputError, match="no pages"):
        list(stream)


def rendering(pages: list[PageImage], page_count: int, errors: list[ErrorItem]) -> Render:
    """A render that hands on `pages` one by one, then returns them with `errors`."""

    def render(on_page: OnPage) -> RasterResult:
        for page in pages:
            on_page(page, page_count)
        return RasterResult(page_count, pages, errors)

    return render


def test_on_done_gets_the_finished_rendering_without_a_reader(tmp_path: Path) -> None:
    """The runner records the page count there, while extraction still reads."""
    pages = [make_page(tmp_path, n) for n in (1, 2)]
    finished: list[RasterResult] = []
    done = threading.Event()
    stream = PageStream(
        rendering(pages, 2, []), on_done=lambda result: (finished.append(result), done.set())
    )
    assert done.wait(timeout=10)
    assert finished[0].page_count == 2 and finished[0].pages == pages
    assert stream.result() is finished[0]


def invoice(req: VisionRequest, number: int) -> str:
    return json.dumps({"invoice_number": "INV-1", "total": "10.00"})


def test_a_page_that_failed_to_render_is_a_render_error_not_a_timeout(
    tmp_path: Path, settings: Settings
) -> None:
    pages = [make_page(tmp_path, n) for n in (1, 3)]
    crash = ErrorItem(ErrorCategory.RENDER_CRASH, "page 2: the renderer crashed", 2)
    stream = PageStream(rendering(pages, 3, [crash]))
    extracted = extract(stream, Invoice, ScriptedModel(invoice), settings, timeout_s=60)
    raster = stream.result()
    result = finalize(
        extracted, settings, page_count=raster.page_count, render_errors=raster.errors
    )
    assert result.pages_total == 3
    assert [(e.page, e.category) for e in result.errors] == [(2, ErrorCategory.RENDER_CRASH)]
    assert result.status is Status.PARTIAL


def test_pages_still_rendering_at_the_deadline_fail_as_timeout(
    tmp_path: Path, settings: Settings
) -> None:
    pages = [make_page(tmp_path, n) for n in (1, 2, 3)]
    release = threading.Event()

    def render(on_page: OnPage) -> RasterResult:
        on_page(pages[0], 3)
        on_page(pages[1], 3)
        release.wait(timeout=10)  # page 3 renders only after extraction gave up
        on_page(pages[2], 3)
        return RasterResult(3, pages, [])

    def slow(req: VisionRequest, number: int) -> str:
        time.sleep(1.0)  # page 2 is still with the model at the deadline, page 1 is done
        return invoice(req, number)

    settings.model.batch_size = 1
    stream = PageStream(render)
    extraction_ended = threading.Timer(6.0, release.set)  # a safety net: never hang the test
    extraction_ended.start()
    try:
        extracted = extract(stream, Invoice, ScriptedModel(slow), settings, timeout_s=1.5)
    finally:
        release.set()
        extraction_ended.cancel()
    raster = stream.result()
    result = finalize(
        extracted, settings, page_count=raster.page_count, render_errors=raster.errors
    )
    timed_out = sorted(e.page for e in result.errors if e.category is ErrorCategory.TIMEOUT)
    assert 3 in timed_out and 1 not in timed_out
    assert result.pages_total == 3


def test_tiles_at_hand_go_to_the_model_while_the_next_page_renders(
    tmp_path: Path, settings: Settings
) -> None:
    pages = [make_page(tmp_path, n) for n in (1, 2)]
    page_1_sent = threading.Event()

    def render(on_page: OnPage) -> RasterResult:
        on_page(pages[0], 2)
        # page 2 "renders" only once page 1 reached the model, though the batch has room for 8
        page_1_sent.wait(timeout=10)
        on_page(pages[1], 2)
        return RasterResult(2, pages, [])

    def reply(req: VisionRequest, number: int) -> str:
        page_1_sent.set()
        return invoice(req, number)

    settings.model.batch_size = 8
    model = ScriptedModel(reply)
    started = time.monotonic()
    result = extract(PageStream(render), Invoice, model, settings, timeout_s=60)
    assert time.monotonic() - started < 5, "page 1 waited for page 2 to fill the batch"
    assert model.batches[0] == 1 and sum(model.batches) == 2
    assert result.record is not None and not result.problems
