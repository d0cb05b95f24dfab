"""`extract` then `finalize`, as the runner does for one schema: for tests of extraction logic
that look at the final result (status, errors, record)."""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.backends import VisionModel
from pipeline.extraction import ExtractionResult, extract
from pipeline.extraction.feed import PageSource
from pipeline.finalize import finalize
from pipeline.settings import Settings
from pipeline.types import ErrorItem
from schemas.base import ExtractionSchema


def extract_final(
    pages: PageSource,
    schema: type[ExtractionSchema],
    model: VisionModel,
    settings: Settings,
    *,
    page_count: int | None = None,
    page_errors: Sequence[ErrorItem] = (),
    timeout_s: float | None = None,
) -> ExtractionResult:
    extracted = extract(pages, schema, model, settings, timeout_s=timeout_s)
    count = page_count if page_count is not None else len(pages)
    return finalize(extracted, settings, page_count=count, render_errors=page_errors)
