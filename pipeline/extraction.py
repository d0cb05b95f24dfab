"""Pages -> tiles -> generate -> validate -> re-ask -> merge -> check -> one result.

Plain Python over a `VisionModel`: no database, no Prefect. Page failures are data (ErrorItems and
a status decided by the error budget); only program errors raise.
"""

from __future__ import annotations

import json
import time
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL import Image
from pydantic import ValidationError

from pipeline.backends import VisionModel
from pipeline.batching import GenerationTimeout
from pipeline.errors import ModelError
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
    parts = [f"page {e.page}: {e.message}" if e.page else e.message for e in errors[:limit]]
    more = f" (and {len(errors) - limit} more)" if len(errors) > limit else ""
    return "; ".join(parts) + more


@dataclass
class _Job:
    tile: Tile
    attempt: int
    prompt: str
    note: str = ""  # which part of the page the tile is (prompts.tile_note)


def extract(
    pages: Sequence[PageImage],
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
    `page_errors`). Tiles of all pages are batched together; bad answers are re-asked with the
    problem, at most `settings.extraction.max_reasks` times per tile. Pages not done within
    `timeout_s` seconds fail with category `timeout`.
    """
    started = time.perf_counter()
    deadline = None if timeout_s is None else started + timeout_s
    grammar = schema.grammar_schema()
    partials: dict[int, list[tuple[Box | None, ExtractionSchema]]] = {}
    problems: dict[int, ErrorItem] = {}
    calls: list[ModelCall] = []
    generate_seconds = 0.0
    pending: deque[_Job] = deque()
    tiles = _tiles(pages, settings, model)
    while True:
        _refill(pending, tiles, schema, settings.model.batch_size)
        if not pending:
            break
        batch = [pending.popleft() for _ in range(min(settings.model.batch_size, len(pending)))]
        requests = [
            VisionRequest(
                images=(job.tile.image,),
                prompt=job.prompt,
                json_schema=grammar,
                max_new_tokens=settings.model.max_new_tokens,
            )
            for job in batch
        ]
        t0 = time.perf_counter()
        left = None if deadline is None else deadline - t0
        if left is not None and left <= 0:
            _time_out([*batch, *pending], pages, partials, problems, timeout_s)
            break
        outputs = generate_splitting_on_failure(model, requests, timeout_s=left)
        generate_seconds += time.perf_counter() - t0
        for job, output in zip(batch, outputs, strict=True):
            page = job.tile.page
            if isinstance(output, ModelError):
                category = (
                    ErrorCategory.TIMEOUT
                    if isinstance(output, GenerationTimeout)
                    else ErrorCategory.MODEL_ERROR
                )
                problems[page] = ErrorItem(category, str(output), page)
                continue
            record, problem = parse_answer(schema, output)
            calls.append(_call(job, output, problem))
            if record is not None:
                # the box, not the tile: page images must not pile up over a long document;
                # no box for the global view, which only fills what the tiles left empty
                box = None if job.tile.is_global else job.tile.box
                partials.setdefault(page, []).append((box, record))
            elif job.attempt < settings.extraction.max_reasks:
                prompt = reask_prompt(schema, problem or "", job.note)
                pending.append(_Job(job.tile, job.attempt + 1, prompt, job.note))
            else:
                problems[page] = ErrorItem(
                    ErrorCategory.INVALID_OUTPUT,
                    f"no valid answer after {job.attempt + 1} attempts: {problem}",
                    page,
                )
    result = _assemble(schema, pages, partials, problems, page_errors, page_count, settings)
    result.calls = calls
    result.timings = {
        "generate_s": round(generate_seconds, 3),
        "extract_s": round(time.perf_counter() - started, 3),
    }
    return result


def _tiles(
    pages: Sequence[PageImage], settings: Settings, model: VisionModel
) -> Iterator[tuple[Tile, str]]:
    """Tiles page by page, lazily (only the pages of the current batch are in memory), within
    the document's token budget, each with the note that tells the model what part it is."""
    budget = DocumentBudget(settings.tiling, model.geometry, len(pages))
    for page in pages:
        with Image.open(page.path) as image:
            rgb = image.convert("RGB")
        allowed = budget.for_page(rgb.width, rgb.height)
        tiles = tile_page(page.number, rgb, settings.tiling, model.geometry, allowed)
        budget.spend(page.number, tiles, allowed)
        parts = sum(not t.is_global for t in tiles)
        for part, tile in enumerate(tiles, start=1):
            yield tile, tile_note(part, parts, page.number, is_global=tile.is_global)


def _refill(
    pending: deque[_Job],
    tiles: Iterator[tuple[Tile, str]],
    schema: type[ExtractionSchema],
    size: int,
) -> None:
    while len(pending) < size:
        tile, note = next(tiles, (None, ""))
        if tile is None:
            return
        pending.append(_Job(tile, 0, extraction_prompt(schema, note), note))


def _time_out(
    jobs: Sequence[_Job],
    pages: Sequence[PageImage],
    partials: dict[int, list[tuple[Box | None, ExtractionSchema]]],
    problems: dict[int, ErrorItem],
    timeout_s: float | None,
) -> None:
    """Fail every page still waiting (queued, or not reached yet) with `timeout`."""
    not_reached = {p.number for p in pages if p.number not in partials and p.number not in problems}
    for page in {job.tile.page for job in jobs} | not_reached:
        problems.setdefault(
            page,
            ErrorItem(
                ErrorCategory.TIMEOUT,
                f"not extracted within the document time limit of {timeout_s:.0f} s "
                "(DOCEXTRACT_EXTRACTION__TIMEOUT_S)",
                page,
            ),
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
    pages: Sequence[PageImage],
    partials: dict[int, list[tuple[Box | None, ExtractionSchema]]],
    problems: dict[int, ErrorItem],
    page_errors: Sequence[ErrorItem],
    page_count: int | None,
    settings: Settings,
) -> ExtractionResult:
    """Merge tiles into pages and pages into the document; decide the status."""
    errors = list(page_errors) + [problems[p] for p in sorted(problems) if p not in partials]
    page_records = [
        schema.merge_tiles([record for _, record in partials[p]], [box for box, _ in partials[p]])
        for p in sorted(partials)
    ]
    total = page_count if page_count is not None else len(pages)
    failed = len({e.page for e in errors if e.page is not None})
    result = ExtractionResult(
        schema_name=schema.schema_name,
        schema_version=schema.schema_version,
        prompt_version=PROMPT_VERSION,
        status=Status.FAILED,
        record=None,
        errors=errors,
        pages_total=total,
        pages_failed=failed,
    )
    if not page_records:
        if not errors:
            errors.append(ErrorItem(ErrorCategory.ZERO_PAGES, "the document has no pages to read"))
        return result
    record = schema.merge(page_records)
    result.record = record.model_dump(mode="json")
    result.review_reasons = record.review_reasons()
    if failed and failed / max(total, 1) > settings.extraction.max_failed_page_share:
        result.status = Status.FAILED
    elif failed:
        result.status = Status.PARTIAL
    elif result.review_reasons:
        result.status = Status.NEEDS_REVIEW
    else:
        result.status = Status.SUCCEEDED
    return result


def record_json(result: ExtractionResult) -> str:
    return json.dumps(result.record, indent=2, ensure_ascii=False)
