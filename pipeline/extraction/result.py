"""What extraction hands on: the raw model calls, the merged record before any decision
(`Extracted`), and the final result with its one status (`ExtractionResult`, made by
`pipeline.finalize`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.duplicates import DuplicateEvidence
from pipeline.types import ErrorCategory, ErrorItem, Status, TokenLogprob
from schemas.base import ExtractionSchema


@dataclass(frozen=True)
class ModelCall:
    """One model answer, kept raw next to the record (what was asked, what came back).

    `tokens` (the answer's tokens with their log-probabilities, where the backend gives them)
    serve per-field confidence in `vouch`; they are not stored (`to_json` leaves them out)."""

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
    tokens: tuple[TokenLogprob, ...] | None = field(default=None, repr=False, compare=False)
    is_global: bool = False  # the page's global view (context only, not a tile)

    def to_json(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k not in ("tokens", "is_global")}
        return dict(data, box=list(self.box), **({"is_global": True} if self.is_global else {}))


@dataclass
class Extracted:
    """The model's answers for one (document, schema), merged, before any status decision.

    `record` is None when no page gave a valid answer. `problems` are the pages that failed in
    extraction (timeout, model error, no valid answer), one item per page; pages that failed to
    render are not known here (`finalize` adds them).
    """

    schema: type[ExtractionSchema]
    record: ExtractionSchema | None
    problems: list[ErrorItem] = field(default_factory=list)
    calls: list[ModelCall] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class ExtractionResult:
    """Everything stored for one (document, schema) extraction, with its one status."""

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
    field_confidence: dict[str, Any] | None = None  # per field path: confidence and evidence
    pages: dict[str, Any] | None = None  # the pages stage: blank pages, pages turned upright
    duplicates: DuplicateEvidence | None = None  # this invoice's key and the stored ones it may be
    grounding: list[dict[str, Any]] | None = None  # per page: where its words came from

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
