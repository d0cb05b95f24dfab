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
from pipeline.errors import ModelError
from pipeline.prompts import PROMPT_VERSION, extraction_prompt, reask_prompt
from pipeline.settings import Settings
from pipeline.tiling import tile_page
from pipeline.types import (
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


def extract(
    pages: Sequence[PageImage],
    schema: type[ExtractionSchema],
    model: VisionModel,
    settings: Settings,
    *,
    page_count: int | None = None,
    page_errors: Sequence[ErrorItem] = (),
) -> ExtractionResult:
    """Extract one record of `schema` from the rendered `pages` of a document.

    `page_count` is the document's page count (pages that failed to render are in
    `page_errors`). Tiles of all pages are batched together; bad answers are re-asked with the
    problem, at most `settings.extraction.max_reasks` times per tile.
    """
    started = time.perf_counter()
    grammar = schema.grammar_schema()
    base_prompt = extraction_prompt(schema)
    partials: dict[int, list[tuple[Tile, ExtractionSchema]]] = {}
    problems: dict[int, ErrorItem] = {}
    calls: list[ModelCall] = []
    generate_seconds = 0.0
    pending: deque[_Job] = deque()
    tiles = _tiles(pages, settings, model)
    while True:
        _refill(pending, tiles, base_prompt, settings.model.batch_size)
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
        outputs = generate_splitting_on_failure(model, requests)
        generate_seconds += time.perf_counter() - t0
        for job, output in zip(batch, outputs, strict=True):
            page = job.tile.page
            if isinstance(output, ModelError):
                problems[page] = ErrorItem(ErrorCategory.MODEL_ERROR, str(output), page)
                continue
            record, problem = parse_answer(schema, output)
            calls.append(_call(job, output, problem))
            if record is not None:
                partials.setdefault(page, []).append((job.tile, record))
            elif job.attempt < settings.extraction.max_reasks:
                pending.append(_Job(job.tile, job.attempt + 1, reask_prompt(schema, problem or "")))
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


def _tiles(pages: Sequence[PageImage], settings: Settings, model: VisionModel) -> Iterator[Tile]:
    """Tiles page by page, lazily, so only the pages of the current batch are in memory."""
    for page in pages:
        with Image.open(page.path) as image:
            rgb = image.convert("RGB")
        yield from tile_page(page.number, rgb, settings.tiling, model.geometry)


def _refill(pending: deque[_Job], tiles: Iterator[Tile], prompt: str, size: int) -> None:
    while len(pending) < size:
        tile = next(tiles, None)
        if tile is None:
            return
        pending.append(_Job(tile, 0, prompt))


def generate_splitting_on_failure(
    model: VisionModel, requests: list[VisionRequest]
) -> list[VisionOutput | ModelError]:
    """`model.generate`, halving a batch that fails, so one bad request (or an out-of-memory
    on a big batch) costs only its own output: that slot holds the ModelError instead."""
    try:
        return list(model.generate(requests))
    except ModelError as exc:
        if len(requests) == 1:
            return [exc]
        middle = len(requests) // 2
        return generate_splitting_on_failure(
            model, requests[:middle]
        ) + generate_splitting_on_failure(model, requests[middle:])


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
    partials: dict[int, list[tuple[Tile, ExtractionSchema]]],
    problems: dict[int, ErrorItem],
    page_errors: Sequence[ErrorItem],
    page_count: int | None,
    settings: Settings,
) -> ExtractionResult:
    """Merge tiles into pages and pages into the document; decide the status."""
    errors = list(page_errors) + [problems[p] for p in sorted(problems) if p not in partials]
    page_records = [schema.merge([record for _, record in partials[p]]) for p in sorted(partials)]
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
