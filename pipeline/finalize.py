"""Finalize: the one place a document's status is decided, from all the evidence at once.

For each (document, schema): the merged record and its rules (review reasons), what `vouch`
found (values not printed on the document, confidences below the threshold: review reasons; the
per-field evidence), the pages that failed to render or to extract (the error budget), and the
routing decision that chose the schema. `failed` is the same decision for a document that never
reached the model.
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.duplicates import DuplicateEvidence
from pipeline.extraction import Extracted, ExtractionResult
from pipeline.pages import all_blank_error, blank_pages, pages_provenance
from pipeline.prompts import PROMPT_VERSION
from pipeline.routing import Route
from pipeline.routing.plan import route_review_reason, unit_identity
from pipeline.settings import Settings
from pipeline.types import ErrorCategory, ErrorItem, PageImage, Status
from pipeline.vouch import Vouched


def finalize(
    extracted: Extracted,
    settings: Settings,
    *,
    page_count: int,
    render_errors: Sequence[ErrorItem] = (),
    route: Route | None = None,
    pages: Sequence[PageImage] = (),
    duplicates: DuplicateEvidence | None = None,
    vouched: Vouched | None = None,
    doubts: Sequence[str] = (),
) -> ExtractionResult:
    """The stored result of one extraction, with its one status.

    `page_count` is the document's page count; `render_errors` the pages that failed to render
    (a page that never rendered was not read for that reason, so its timeout is dropped);
    `route` the routing decision, when `--schema auto` chose this schema; `pages` the rendered
    pages as the pages stage left them (blank pages were never read: no timeout is theirs, they
    do not count in the error budget, and a document of only blank pages fails as `blank`);
    `duplicates` the stored invoices this one may duplicate: each is a review reason (a possible
    duplicate is never dropped: a person decides).
    `vouched` the evidence (None: grounding is off).
    `doubts` what is unsure about the document's pages (a bundle's boundary): review reasons.
    """
    schema = extracted.schema
    blank = blank_pages(pages)
    not_read = {e.page for e in render_errors} | set(blank)
    errors = [
        e
        for e in extracted.problems
        if not (e.category is ErrorCategory.TIMEOUT and e.page in not_read)
    ]
    if (
        extracted.record is None
        and not errors
        and not render_errors
        and pages
        and len(blank) == len(pages)
    ):
        errors.append(all_blank_error(pages))
    errors = sorted([*errors, *render_errors], key=lambda e: e.page or 0)
    reasons: list[str] = []
    if extracted.record is not None:
        reasons += extracted.record.review_reasons()
    doubt = route_review_reason(route, settings) if route is not None else None
    reasons += [doubt] if doubt else []
    if extracted.record is not None and duplicates is not None:
        reasons += duplicates.reasons()
    reasons += vouched.reasons if vouched is not None else []
    reasons += doubts if extracted.record is not None else []
    result = ExtractionResult(
        schema_name=schema.schema_name,
        schema_version=schema.schema_version,
        prompt_version=PROMPT_VERSION,
        status=Status.FAILED,
        record=None if extracted.record is None else extracted.record.model_dump(mode="json"),
        review_reasons=reasons,
        errors=errors,
        calls=list(extracted.calls),
        pages_total=page_count,
        timings=dict(extracted.timings),
        route=route.to_json() if route is not None else None,
        pages=pages_provenance(pages),
        duplicates=duplicates,
        field_confidence=vouched.fields if vouched is not None and extracted.record else None,
        grounding=vouched.pages if vouched is not None else None,
    )
    _decide_status(result, settings, blank=len(blank))
    return result


def failed(schema_name: str, item: ErrorItem) -> ExtractionResult:
    """The result of a unit that could not be extracted at all (unreadable document, routing
    failure, a bug): `failed`, with the reason."""
    name, version = unit_identity(schema_name)
    return ExtractionResult(name, version, PROMPT_VERSION, Status.FAILED, None, errors=[item])


def _decide_status(result: ExtractionResult, settings: Settings, blank: int = 0) -> None:
    failed_pages = len({e.page for e in result.errors if e.page is not None})
    result.pages_failed = failed_pages
    share = failed_pages / max(result.pages_total - blank, 1)  # of the pages there were to read
    if result.record is None:
        if not result.errors:
            result.errors.append(
                ErrorItem(ErrorCategory.ZERO_PAGES, "the document has no pages to read")
            )
        result.status = Status.FAILED
    elif failed_pages and share > settings.extraction.max_failed_page_share:
        result.status = Status.FAILED
    elif failed_pages:
        result.status = Status.PARTIAL
    elif result.review_reasons:
        result.status = Status.NEEDS_REVIEW
    else:
        result.status = Status.SUCCEEDED
