"""Pages -> tiles -> generate -> validate -> re-ask -> merge -> check -> one result.

Plain Python over a `VisionModel`: no database, no Prefect. Page failures are data (ErrorItems and
a status decided by the error budget); only program errors raise.
"""

from __future__ import annotations

import json
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Protocol

from PIL import Image
from pydantic import ValidationError

from pipeline.backends import VisionModel
from pipeline.errors import GenerationTimeout, ModelError
from pipeline.prompts import PROMPT_VERSION, extraction_prompt, reask_prompt, tile_note
from pipeline.settings import Settings
from pipeline.tiling import DocumentBudget, tile_page
from pipeline.types import (
    Box,
    ErrorCategory,
    ErrorItem,
    PageImage,
    Status,
    Tile,
    VisionOutput,
    VisionRequest,
)
from schemas.base import ExtractionSchema


@dataclass(frozen=True)
class ModelCall:
    """One model answer, kept raw next to the record (what was asked, what came back)."""

    page: int
    box: tuple[int, int, int, int]
    attempt: int
    text: str
    stop_reason: str
    image_tokens: int
    input_tokens: int
    output_tokens: int
    seconds: float
    problem: str | None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__, box=list(self.box))


@dataclass
class ExtractionResult:
    """Everything stored for one (document, schema) extraction."""

    schema_name: str
    schema_version: str
    prompt_version: str
    status: Status
    record: dict[str, Any] | None
    review_reasons: list[str] = field(default_factory=list)
    errors: list[ErrorItem] = field(default_factory=list)
    calls: list[ModelCall] = field(default_factory=list)
    pages_total: int = 0
    pages_failed: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    route: dict[str, Any] | None = None  # the routing decision, when `--schema auto` chose this

    @property
    def error_category(self) -> ErrorCategory | None:
        if self.status in (Status.SUCCEEDED, Status.NEEDS_REVIEW) or not self.errors:
            return None
        return Counter(e.category for e in self.errors).most_common(1)[0][0]

    @property
    def error_message(self) -> str | None:
        if self.error_category is None:
            return None
        return summarize_errors(self.errors)


def summarize_errors(errors: Sequence[ErrorItem], limit: int = 3) -> str:
    parts = [_with_page(e) for e in errors[:limit]]
    more = f" (and {len(errors) - limit} more)" if len(errors) > limit else ""
    return "; ".join(parts) + more


def _with_page(error: ErrorItem) -> str:
    """The message with its page number in front, once (render errors carry it already)."""
    prefix = f"page {error.page}: "
    if not error.page or error.message.startswith(prefix):
        return error.message
    return prefix + error.message


class PageSource(Protocol):
    """Pages to read: a list, or a `PageStream` still rendering (len is the page count)."""

    def __iter__(self) -> Iterator[PageImage]: ...

    def __len__(self) -> int: ...


@dataclass
class _Job:
    tile: Tile
    attempt: int
    prompt: str
    note: str = ""  # which part of the page the tile is (prompts.tile_note)
    order: int = 0  # the tile's place in the document: results are merged in this order


# Generate calls one document keeps going at once. Tiles go to the model as they are cut, a call
# per page or so, without waiting for the answers before; the batching layer merges the calls of
# every document into its batches.
CALLS_IN_FLIGHT = 4
POLL_S = 0.02  # how often a document looks for a newly rendered page while its calls run


def extract(
    pages: PageSource,
    schema: type[ExtractionSchema],
    model: VisionModel,
    settings: Settings,
    *,
    page_count: int | None = None,
    page_errors: Sequence[ErrorItem] = (),
    timeout_s: float | None = None,
) -> ExtractionResult:
    """Extract one record of `schema` from the rendered `pages` of a document.

    `page_count` is the document's page count (pages that failed to render are in
    `page_errors`). `pages` may still be rendering (a `PageStream`): each page is read when it
    arrives and its tiles go to the model at once, up to two batches' worth of tiles of this
    document in flight (`model.batch_size`); bad answers are re-asked with the problem, at most
    `settings.extraction.max_reasks` times per tile. Pages not done within `timeout_s` seconds
    fail with category `timeout`.
    """
    started = time.perf_counter()
    deadline = None if timeout_s is None else started + timeout_s
    grammar = schema.grammar_schema()
    partials: dict[int, list[tuple[int, Box | None, ExtractionSchema]]] = {}
    problems: dict[int, ErrorItem] = {}
    calls: list[tuple[int, ModelCall]] = []
    generate_seconds = 0.0  # waiting on the model with calls in flight
    pending: deque[_Job] = deque()
    running: dict[Future[list[VisionOutput | ModelError]], list[_Job]] = {}
    tiles = _TileFeed(pages, settings, model)
    seen = tiles.seen  # pages read so far (a stream may not have rendered the rest yet)
    timed_out = False
    size = settings.model.batch_size
    window = 2 * size  # tiles in flight: one batch running, the next one queued
    generating = ThreadPoolExecutor(CALLS_IN_FLIGHT, thread_name_prefix="docextract-extract")
    try:
        while True:
            now = time.perf_counter()
            if deadline is not None and now >= deadline:
                # before reading more pages: a stream must not be waited on past the deadline
                timed_out = True
                in_flight = [job for batch in running.values() for job in batch]
                _time_out([*in_flight, *pending], seen, partials, problems, timeout_s)
                break
            flying = sum(len(batch) for batch in running.values())
            # wait for a page still rendering only when there is nothing else to wait for
            _refill(pending, tiles, schema, window - flying - len(pending), wait=not running)
            while pending and len(running) < CALLS_IN_FLIGHT and flying < window:
                batch = [pending.popleft() for _ in range(min(size, window - flying, len(pending)))]
                flying += len(batch)
                left = None if deadline is None else deadline - now
                call = generating.submit(
                    generate_splitting_on_failure,
                    model,
                    [_request(job, grammar, settings) for job in batch],
                    timeout_s=left,
                )
                running[call] = batch
            if not running:
                break
            # a new page may arrive meanwhile: look for it every POLL_S unless all are read
            waits = [] if tiles.exhausted else [POLL_S]
            if deadline is not None:
                waits.append(max(0.0, deadline - now))
            waited = time.perf_counter()
            done, _ = wait(running, timeout=min(waits, default=None), return_when=FIRST_COMPLETED)
            generate_seconds += time.perf_counter() - waited
            for call in done:
                batch = running.pop(call)
                for job, output in zip(batch, call.result(), strict=True):
                    _take_answer(schema, job, output, settings, partials, problems, calls, pending)
    finally:
        generating.shutdown(wait=False)  # idle by now, or abandoned at the deadline
    if timed_out:
        total = page_count if page_count is not None else len(pages)
        unread = set(range(1, total + 1)) - set(seen) - {e.page for e in page_errors}
        for page in unread:  # never reached before the time ran out
            problems[page] = timeout_error(page, timeout_s)
    result = _assemble(schema, pages, partials, problems, page_errors, page_count, settings)
    result.calls = [call for _, call in sorted(calls, key=lambda c: (c[0], c[1].attempt))]
    result.timings = {
        "generate_s": round(generate_seconds, 3),
        "extract_s": round(time.perf_counter() - started, 3),
    }
    return result


def _request(job: _Job, grammar: dict[str, Any], settings: Settings) -> VisionRequest:
    return VisionRequest(
        images=(job.tile.image,),
        prompt=job.prompt,
        json_schema=grammar,
        max_new_tokens=settings.model.max_new_tokens,
    )


def _take_answer(
    schema: type[ExtractionSchema],
    job: _Job,
    output: VisionOutput | ModelError,
    settings: Settings,
    partials: dict[int, list[tuple[int, Box | None, ExtractionSchema]]],
    problems: dict[int, ErrorItem],
    calls: list[tuple[int, ModelCall]],
    pending: deque[_Job],
) -> None:
    """Validate one answer: a record for its page, a re-ask, or the page's problem."""
    page = job.tile.page
    if isinstance(output, ModelError):
        category = (
            ErrorCategory.TIMEOUT
            if isinstance(output, GenerationTimeout)
            else ErrorCategory.MODEL_ERROR
        )
        problems[page] = ErrorItem(category, str(output), page)
        return
    record, problem = parse_answer(schema, output)
    calls.append((job.order, _call(job, output, problem)))
    if record is not None:
        # the box, not the tile: page images must not pile up over a long document;
        # no box for the global view, which only fills what the tiles left empty
        box = None if job.tile.is_global else job.tile.box
        partials.setdefault(page, []).append((job.order, box, record))
    elif job.attempt < settings.extraction.max_reasks:
        prompt = reask_prompt(schema, problem or "", job.note)
        pending.append(_Job(job.tile, job.attempt + 1, prompt, job.note, job.order))
    else:
        problems[page] = ErrorItem(
            ErrorCategory.INVALID_OUTPUT,
            f"no valid answer after {job.attempt + 1} attempts: {problem}",
            page,
        )


class _TileFeed:
    """Tiles page by page, lazily (only the pages of the tiles in flight are in memory), within
    the document's token budget, each with the note that tells the model what part it is and
    its place in the document. `seen` lists the pages read so far, in reading order;
    `exhausted` is True once every page is read and every tile handed out."""

    def __init__(self, pages: PageSource, settings: Settings, model: VisionModel) -> None:
        self.seen: list[int] = []
        self.exhausted = False
        self._pages = iter(pages)
        # a PageStream says whether its next page is rendered; a list always has it
        self._ready: Callable[[int], bool] | None = getattr(pages, "ready", None)
        self._queued: deque[tuple[Tile, str]] = deque()
        self._handed = 0
        self._settings, self._geometry = settings, model.geometry
        self._budget = DocumentBudget(settings.tiling, model.geometry, len(pages))

    def next(self, wait: bool) -> tuple[Tile, str, int] | None:
        """The next tile, its note and its place; None at the end, or, unless `wait`, when the
        next page is still rendering (so the tiles at hand go to the model instead of waiting)."""
        while not self._queued:
            if self.exhausted:
                return None
            if not wait and self._ready is not None and not self._ready(len(self.seen)):
                return None
            page = next(self._pages, None)
            if page is None:
                self.exhausted = True
                return None
            self._read(page)
        tile, note = self._queued.popleft()
        self._handed += 1
        return tile, note, self._handed

    def _read(self, page: PageImage) -> None:
        self.seen.append(page.number)
        with Image.open(page.path) as image:
            # a page cached as greyscale stays so: measured and cut at a third of the cost of
            # RGB, its tiles converted at their own (small) size, pixel for pixel the same
            image.load()
            page_image = image if image.mode == "L" else image.convert("RGB")
        allowed = self._budget.for_page(page_image.width, page_image.height)
        tiles = tile_page(page.number, page_image, self._settings.tiling, self._geometry, allowed)
        self._budget.spend(page.number, tiles, allowed)
        parts = sum(not t.is_global for t in tiles)
        for part, tile in enumerate(tiles, start=1):
            note = tile_note(part, parts, page.number, is_global=tile.is_global)
            self._queued.append((tile, note))


def _refill(
    pending: deque[_Job],
    tiles: _TileFeed,
    schema: type[ExtractionSchema],
    room: int,
    *,
    wait: bool,
) -> None:
    """Add up to `room` new tiles' jobs to `pending`. Waits for a page still rendering only
    if `wait` and `pending` is empty."""
    for _ in range(room):
        item = tiles.next(wait=wait and not pending)
        if item is None:
            return
        tile, note, order = item
        pending.append(_Job(tile, 0, extraction_prompt(schema, note), note, order))


def _time_out(
    jobs: Sequence[_Job],
    seen: Sequence[int],
    partials: dict[int, list[tuple[int, Box | None, ExtractionSchema]]],
    problems: dict[int, ErrorItem],
    timeout_s: float | None,
) -> None:
    """Fail every page read but still waiting (tiles queued or in flight) with `timeout`.
    Pages not read at all are accounted for at assembly (`add_page_errors`)."""
    not_done = {n for n in seen if n not in partials and n not in problems}
    for page in {job.tile.page for job in jobs} | not_done:
        problems.setdefault(page, timeout_error(page, timeout_s))


def timeout_error(page: int, timeout_s: float | None) -> ErrorItem:
    limit = f"{timeout_s:.0f} s" if timeout_s is not None else "its limit"
    return ErrorItem(
        ErrorCategory.TIMEOUT,
        f"not extracted within the document time limit of {limit} "
        "(DOCEXTRACT_EXTRACTION__TIMEOUT_S)",
        page,
    )


def generate_splitting_on_failure(
    model: VisionModel, requests: list[VisionRequest], *, timeout_s: float | None = None
) -> list[VisionOutput | ModelError]:
    """`model.generate`, halving a batch that fails, so one bad request (or an out-of-memory
    on a big batch) costs only its own output: that slot holds the ModelError instead.
    A timeout is not split: every slot holds it."""
    try:
        return list(model.generate(requests, timeout_s=timeout_s))
    except GenerationTimeout as exc:
        return [exc] * len(requests)
    except ModelError as exc:
        if len(requests) == 1:
            return [exc]
        middle = len(requests) // 2
        return generate_splitting_on_failure(
            model, requests[:middle], timeout_s=timeout_s
        ) + generate_splitting_on_failure(model, requests[middle:], timeout_s=timeout_s)


def parse_answer(
    schema: type[ExtractionSchema], output: VisionOutput
) -> tuple[ExtractionSchema | None, str | None]:
    """The validated record, or None and the problem in words (fed back in the re-ask)."""
    if output.stop_reason == "length":
        return None, (
            f"the answer was cut off at {output.output_tokens} tokens before the JSON "
            "ended; answer more briefly"
        )
    text = _json_object_text(output.text)
    try:
        return schema.model_validate_json(text), None
    except ValidationError as exc:
        return None, format_validation_error(exc)


def _json_object_text(text: str) -> str:
    """The outermost {...} of an answer (unconstrained backends wrap JSON in prose or fences)."""
    start, end = text.find("{"), text.rfind("}")
    return text[start : end + 1] if 0 <= start < end else text


def format_validation_error(exc: ValidationError, limit: int = 5) -> str:
    errors = exc.errors(include_url=False)
    parts = []
    for error in errors[:limit]:
        where = ".".join(str(p) for p in error["loc"]) or "answer"
        parts.append(f"{where}: {error['msg']}")
    more = f" (and {len(errors) - limit} more)" if len(errors) > limit else ""
    return "; ".join(parts) + more


def _call(job: _Job, output: VisionOutput, problem: str | None) -> ModelCall:
    return ModelCall(
        page=job.tile.page,
        box=job.tile.box,
        attempt=job.attempt,
        text=output.text,
        stop_reason=output.stop_reason,
        image_tokens=output.image_tokens,
        input_tokens=output.input_tokens,
        output_tokens=output.output_tokens,
        seconds=round(output.seconds, 4),
        problem=problem,
    )


def _assemble(
    schema: type[ExtractionSchema],
    pages: PageSource,
    partials: dict[int, list[tuple[int, Box | None, ExtractionSchema]]],
    problems: dict[int, ErrorItem],
    page_errors: Sequence[ErrorItem],
    page_count: int | None,
    settings: Settings,
) -> ExtractionResult:
    """Merge tiles into pages and pages into the document; decide the status."""
    errors = list(page_errors) + [problems[p] for p in sorted(problems) if p not in partials]
    page_records = []
    for page in sorted(partials):
        answers = sorted(partials[page], key=lambda answer: answer[0])  # the tiles' order
        page_records.append(
            schema.merge_tiles([record for *_, record in answers], [box for _, box, _ in answers])
        )
    result = ExtractionResult(
        schema_name=schema.schema_name,
        schema_version=schema.schema_version,
        prompt_version=PROMPT_VERSION,
        status=Status.FAILED,
        record=None,
        errors=errors,
        pages_total=page_count if page_count is not None else len(pages),
    )
    if page_records:
        record = schema.merge(page_records)
        result.record = record.model_dump(mode="json")
        result.review_reasons = record.review_reasons()
    decide_status(result, settings)
    return result


def decide_status(result: ExtractionResult, settings: Settings) -> None:
    """The status from the record, its review reasons and the failed pages (error budget)."""
    failed = len({e.page for e in result.errors if e.page is not None})
    result.pages_failed = failed
    if result.record is None:
        if not result.errors:
            result.errors.append(
                ErrorItem(ErrorCategory.ZERO_PAGES, "the document has no pages to read")
            )
        result.status = Status.FAILED
    elif failed and failed / max(result.pages_total, 1) > settings.extraction.max_failed_page_share:
        result.status = Status.FAILED
    elif failed:
        result.status = Status.PARTIAL
    elif result.review_reasons:
        result.status = Status.NEEDS_REVIEW
    else:
        result.status = Status.SUCCEEDED


def add_page_errors(
    result: ExtractionResult,
    page_count: int,
    render_errors: Sequence[ErrorItem],
    settings: Settings,
) -> None:
    """Fold in what was only known once rendering ended (extraction read a `PageStream`): the
    page count and the pages that failed to render. Decides the status again."""
    result.pages_total = page_count
    failed_to_render = {e.page for e in render_errors}
    # A page that never rendered was not read for that reason, not for lack of time.
    result.errors = [
        e
        for e in result.errors
        if not (e.category is ErrorCategory.TIMEOUT and e.page in failed_to_render)
    ]
    result.errors.extend(render_errors)
    result.errors.sort(key=lambda e: e.page or 0)
    decide_status(result, settings)


def record_json(result: ExtractionResult) -> str:
    return json.dumps(result.record, indent=2, ensure_ascii=False)
