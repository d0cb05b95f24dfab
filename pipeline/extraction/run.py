"""`extract`: a document's pages -> tiles -> generate -> validate -> re-ask -> merge.

Plain Python over a `VisionModel`: no database, no Prefect, no status decision (that is
`pipeline.finalize`). Page failures are data (one `ErrorItem` per page); only program errors
raise.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from pipeline.backends import VisionModel
from pipeline.errors import GenerationTimeout, ModelError
from pipeline.extraction.answers import parse_answer
from pipeline.extraction.feed import PageSource, TileFeed
from pipeline.extraction.flight import Answer, InFlight, Job
from pipeline.extraction.result import Extracted, ModelCall
from pipeline.prompts import extraction_prompt, reask_prompt
from pipeline.settings import Settings
from pipeline.types import Box, ErrorCategory, ErrorItem, VisionOutput, VisionRequest
from schemas.base import ExtractionSchema

POLL_S = 0.02  # how often a document looks for a newly rendered page while its calls run


def extract(
    pages: PageSource,
    schema: type[ExtractionSchema],
    model: VisionModel,
    settings: Settings,
    *,
    timeout_s: float | None = None,
    document: str | None = None,
) -> Extracted:
    """Extract one record of `schema` from the rendered `pages` of a document.

    `pages` may still be rendering (a `PageStream`): each page is read when it arrives and its
    tiles go to the model at once (feed -> submit), up to two batches' worth of tiles of this
    document in flight; answers are validated as they come (collect), bad ones re-asked with the
    problem, at most `settings.extraction.max_reasks` times per tile; the page records are then
    merged (assemble). Pages not done within `timeout_s` seconds fail with category `timeout`.
    `document` (the source path) travels with each request (`VisionRequest.document`).
    """
    started = time.perf_counter()
    deadline = None if timeout_s is None else started + timeout_s
    grammar = schema.grammar_schema()
    feed = TileFeed(pages, settings.tiling, model.geometry)
    flight = InFlight(model, settings.model.batch_size)
    answers = Answers(schema, settings.extraction.max_reasks)
    generate_seconds = 0.0  # waiting on the model with calls in flight
    try:
        while True:
            now = time.perf_counter()
            if deadline is not None and now >= deadline:
                # before reading more pages: a stream must not be waited on past the deadline
                answers.time_out(flight.jobs(), len(pages), timeout_s)
                break
            # wait for a page still rendering only when there is nothing else to wait for
            _feed(flight, feed, schema, wait=not flight.busy)
            left = None if deadline is None else deadline - now
            flight.submit(lambda job: _request(job, grammar, settings, document), left)
            if not flight.busy:
                break
            waited = time.perf_counter()
            for job, answer in flight.collect(_poll_s(feed, deadline, now)):
                reask = answers.take(job, answer)
                if reask is not None:
                    flight.pending.append(reask)
            generate_seconds += time.perf_counter() - waited
    finally:
        flight.close()  # idle by now, or abandoned at the deadline
    extracted = answers.assemble()
    extracted.timings = {
        "generate_s": round(generate_seconds, 3),
        "extract_s": round(time.perf_counter() - started, 3),
    }
    return extracted


def _feed(flight: InFlight, feed: TileFeed, schema: type[ExtractionSchema], *, wait: bool) -> None:
    """Queue new tiles while there is room. Waits for a page still rendering only if `wait`
    and nothing is pending."""
    for _ in range(flight.room()):
        item = feed.next(wait=wait and not flight.pending)
        if item is None:
            return
        tile, note, order = item
        flight.pending.append(Job(tile, 0, extraction_prompt(schema, note), note, order))


def _poll_s(feed: TileFeed, deadline: float | None, now: float) -> float | None:
    """How long to wait for answers: until the deadline, and every POLL_S while pages may still
    arrive (a new page must not wait for the calls in flight)."""
    waits = [] if feed.exhausted else [POLL_S]
    if deadline is not None:
        waits.append(max(0.0, deadline - now))
    return min(waits, default=None)


def _request(
    job: Job, grammar: dict[str, Any], settings: Settings, document: str | None
) -> VisionRequest:
    return VisionRequest(
        images=(job.tile.image,),
        prompt=job.prompt,
        json_schema=grammar,
        max_new_tokens=settings.model.max_new_tokens,
        document=document,
        page=job.tile.page,
    )


TIMEOUT_SETTING = "DOCEXTRACT_EXTRACTION__TIMEOUT_S"  # named in every timeout's message


class Answers:
    """What the answers of one document gave so far: valid records per page (with the tile's
    place and box), the pages' problems, and every model call."""

    def __init__(self, schema: type[ExtractionSchema], max_reasks: int) -> None:
        self.schema, self.max_reasks = schema, max_reasks
        self.partials: dict[int, list[tuple[int, Box | None, ExtractionSchema]]] = {}
        self.problems: dict[int, ErrorItem] = {}
        self.calls: list[tuple[int, ModelCall]] = []

    def take(self, job: Job, answer: Answer) -> Job | None:
        """Validate one answer: a record for its page, the page's problem, or (returned) the
        job that re-asks with the problem."""
        page = job.tile.page
        if isinstance(answer, GenerationTimeout):  # the document's time ran out while it waited
            message = f"{answer}: the document time limit ran out ({TIMEOUT_SETTING})"
            self.problems[page] = ErrorItem(ErrorCategory.TIMEOUT, message, page)
            return None
        if isinstance(answer, ModelError):
            self.problems[page] = ErrorItem(ErrorCategory.MODEL_ERROR, str(answer), page)
            return None
        record, problem = parse_answer(self.schema, answer)
        self.calls.append((job.order, _call(job, answer, problem)))
        if record is not None:
            # the box, not the tile: page images must not pile up over a long document;
            # no box for the global view, which only fills what the tiles left empty
            box = None if job.tile.is_global else job.tile.box
            self.partials.setdefault(page, []).append((job.order, box, record))
            return None
        if job.attempt < self.max_reasks:
            prompt = reask_prompt(self.schema, problem or "", job.note)
            return Job(job.tile, job.attempt + 1, prompt, job.note, job.order)
        self.problems[page] = ErrorItem(
            ErrorCategory.INVALID_OUTPUT,
            f"no valid answer after {job.attempt + 1} attempts: {problem}",
            page,
        )
        return None

    def time_out(self, jobs: Sequence[Job], page_count: int, timeout_s: float | None) -> None:
        """Fail with `timeout` every page not done: read but still waiting (tiles queued or in
        flight), or never read. (A page that failed to render is excused in `finalize`.)"""
        waiting = {job.tile.page for job in jobs}
        not_done = {n for n in range(1, page_count + 1) if n not in self.partials} | waiting
        for page in not_done - set(self.problems):
            self.problems[page] = timeout_error(page, timeout_s)

    def assemble(self) -> Extracted:
        """Merge tiles into pages (in the tiles' order) and pages into the document."""
        page_records = []
        for page in sorted(self.partials):
            answers = sorted(self.partials[page], key=lambda answer: answer[0])
            records = [record for *_, record in answers]
            page_records.append(self.schema.merge_tiles(records, [box for _, box, _ in answers]))
        problems = [self.problems[p] for p in sorted(self.problems) if p not in self.partials]
        calls = [call for _, call in sorted(self.calls, key=lambda c: (c[0], c[1].attempt))]
        record = self.schema.merge(page_records) if page_records else None
        return Extracted(self.schema, record, problems, calls)


def timeout_error(page: int, timeout_s: float | None) -> ErrorItem:
    limit = f"{timeout_s:.0f} s" if timeout_s is not None else "its limit"
    return ErrorItem(
        ErrorCategory.TIMEOUT,
        f"not extracted within the document time limit of {limit} ({TIMEOUT_SETTING})",
        page,
    )


def _call(job: Job, output: VisionOutput, problem: str | None) -> ModelCall:
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
        tokens=output.tokens,
        is_global=job.tile.is_global,
    )
