"""Extraction logic with a scripted backend: validation, re-ask, statuses, merge, model faults."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

from _extract import extract_final
from conftest import is_red, make_page

from pipeline.backends.scripted import ScriptedModel
from pipeline.errors import ModelError
from pipeline.settings import Settings
from pipeline.types import ErrorCategory, ErrorItem, PageImage, Status, VisionRequest
from schemas.invoice import Invoice

GOOD = {
    "invoice_number": "INV-1",
    "issue_date": "2024-03-01",
    "due_date": "2024-03-31",
    "total": "119.00",
    "subtotal": "100.00",
    "tax_total": "19.00",
    "line_items": [
        {"description": "Widget", "quantity": "2", "unit_price": "50.00", "amount": "100.00"}
    ],
}


def answer(**changes: object) -> str:
    return json.dumps({**GOOD, **changes})


def test_valid_answer_succeeds_and_keeps_raw_text(tmp_path: Path, settings: Settings) -> None:
    model = ScriptedModel.from_replies([answer()])
    result = extract_final([make_page(tmp_path, 1)], Invoice, model, settings)
    assert result.status is Status.SUCCEEDED
    assert result.record is not None and result.record["total"] == "119.00"
    assert [c.text for c in result.calls] == [answer()]
    assert model.requests[0].json_schema == Invoice.grammar_schema()


def test_invalid_json_is_reasked_with_the_validation_error(
    tmp_path: Path, settings: Settings
) -> None:
    model = ScriptedModel.from_replies([answer(issue_date="not a date"), answer()])
    result = extract_final([make_page(tmp_path, 1)], Invoice, model, settings)
    assert result.status is Status.SUCCEEDED
    first, second = model.requests
    assert "rejected" not in first.prompt
    assert "issue_date" in second.prompt and "rejected" in second.prompt
    assert [c.attempt for c in result.calls] == [0, 1]
    assert result.calls[0].problem and "issue_date" in result.calls[0].problem


def test_truncated_answer_counts_as_invalid(tmp_path: Path, settings: Settings) -> None:
    model = ScriptedModel.from_replies([(answer()[:40], "length"), answer()])
    result = extract_final([make_page(tmp_path, 1)], Invoice, model, settings)
    assert result.status is Status.SUCCEEDED
    assert "cut off" in model.requests[1].prompt


def test_reasks_are_bounded_and_end_failed(tmp_path: Path, settings: Settings) -> None:
    settings.extraction.max_reasks = 2
    model = ScriptedModel.from_replies(["{not json"] * 3)
    result = extract_final([make_page(tmp_path, 1)], Invoice, model, settings)
    assert len(model.requests) == 3
    assert result.status is Status.FAILED
    assert result.error_category is ErrorCategory.INVALID_OUTPUT
    assert result.record is None and result.pages_failed == 1


def test_rule_failure_gives_needs_review_with_reason(tmp_path: Path, settings: Settings) -> None:
    model = ScriptedModel.from_replies([answer(total="150.00")])
    result = extract_final([make_page(tmp_path, 1)], Invoice, model, settings)
    assert result.status is Status.NEEDS_REVIEW
    assert any("!= total 150.00" in r for r in result.review_reasons)


def fails_on_red_pages(request: VisionRequest, number: int) -> str:
    """Red pages get a broken answer, every other page a good one."""
    return "{broken" if is_red(request.images[0]) else answer()


def test_page_failures_within_budget_are_partial(tmp_path: Path, settings: Settings) -> None:
    settings.extraction.max_reasks = 0
    pages = [make_page(tmp_path / "a", 1), make_page(tmp_path / "b", 2, background="red")]
    result = extract_final(pages, Invoice, ScriptedModel(fails_on_red_pages), settings)
    assert result.status is Status.PARTIAL
    assert result.pages_failed == 1 and result.errors[0].page == 2
    assert result.record is not None


def test_page_failures_beyond_budget_are_failed(tmp_path: Path, settings: Settings) -> None:
    settings.extraction.max_reasks = 0
    pages = [
        make_page(tmp_path / "a", 1),
        make_page(tmp_path / "b", 2, background="red"),
        make_page(tmp_path / "c", 3, background="red"),
    ]
    result = extract_final(pages, Invoice, ScriptedModel(fails_on_red_pages), settings)
    assert result.status is Status.FAILED
    assert result.pages_failed == 2


def test_render_errors_count_against_the_budget(tmp_path: Path, settings: Settings) -> None:
    model = ScriptedModel.from_replies([answer()])
    render_error = ErrorItem(ErrorCategory.CORRUPT, "page 2 could not be rendered", 2)
    result = extract_final(
        [make_page(tmp_path, 1)], Invoice, model, settings, page_count=2, page_errors=[render_error]
    )
    assert result.status is Status.PARTIAL
    assert result.errors == [render_error]


def test_line_items_across_pages_are_joined_without_repeats(
    tmp_path: Path, settings: Settings
) -> None:
    line = {"description": "A", "quantity": "1", "unit_price": "10.00", "amount": "10.00"}
    other = {**line, "description": "B"}
    page1 = answer(line_items=[line], total=None, subtotal=None, tax_total=None)
    # page 2 repeats the last row of page 1 at its top (a carried-over line), then continues
    page2 = json.dumps(
        {
            "invoice_number": None,
            "issue_date": None,
            "line_items": [line, other],
            "subtotal": "20.00",
            "tax_total": "0",
            "total": "20.00",
        }
    )
    model = ScriptedModel.from_replies([page1, page2])
    pages = [make_page(tmp_path / "a", 1), make_page(tmp_path / "b", 2)]
    result = extract_final(pages, Invoice, model, settings)
    assert result.record is not None
    assert [i["description"] for i in result.record["line_items"]] == ["A", "B"]
    assert result.record["invoice_number"] == "INV-1" and result.record["total"] == "20.00"
    assert result.status is Status.SUCCEEDED


def test_a_failing_batch_is_split_and_only_the_bad_request_fails(
    tmp_path: Path, settings: Settings
) -> None:
    settings.extraction.max_reasks = 0

    def script(request: VisionRequest, number: int) -> object:
        return (
            ModelError("CUDA out of memory", retryable=True)
            if is_red(request.images[0])
            else answer()
        )

    pages = [
        make_page(tmp_path / str(n), n, background="red" if n == 3 else "white")
        for n in range(1, 5)
    ]
    model = ScriptedModel(script)  # type: ignore[arg-type]
    result = extract_final(pages, Invoice, model, settings)
    assert result.status is Status.PARTIAL
    assert [e.category for e in result.errors] == [ErrorCategory.MODEL_ERROR]
    assert result.errors[0].page == 3
    assert model.batches[0] == 4 and len(model.batches) > 1


def test_batches_respect_batch_size(tmp_path: Path, settings: Settings) -> None:
    settings.model.batch_size = 2
    pages = [make_page(tmp_path / str(n), n) for n in range(1, 6)]
    model = ScriptedModel.from_replies([answer()] * 5)
    extract_final(pages, Invoice, model, settings)
    assert model.batches == [2, 2, 1]


def test_the_next_pages_are_cut_while_the_model_generates(
    tmp_path: Path, settings: Settings
) -> None:
    page_2_read = threading.Event()

    class Pages:
        def __init__(self) -> None:
            self.pages = [make_page(tmp_path, n) for n in (1, 2)]

        def __len__(self) -> int:
            return 2

        def __iter__(self) -> Iterator[PageImage]:
            yield self.pages[0]
            page_2_read.set()
            yield self.pages[1]

    overlapped = []

    def reply(request: VisionRequest, number: int) -> str:
        if number == 0:  # page 1 is generating: page 2 should be read and cut meanwhile
            overlapped.append(page_2_read.wait(timeout=5))
        return answer()

    settings.model.batch_size = 1
    result = extract_final(Pages(), Invoice, ScriptedModel(reply), settings)
    assert overlapped == [True]
    assert result.pages_failed == 0 and result.record is not None


def test_a_document_sends_its_next_page_before_the_answer_for_the_first(
    tmp_path: Path, settings: Settings
) -> None:
    """Tiles go to the model as they are cut, several calls in flight: the batching layer can
    then merge them with other documents' instead of getting one batch per document at a time."""
    page_2_sent = threading.Event()
    answered_after_page_2: list[bool] = []

    def reply(request: VisionRequest, number: int) -> str:
        if number == 0:  # page 1's answer waits until page 2 has reached the model
            answered_after_page_2.append(page_2_sent.wait(timeout=5))
        else:
            page_2_sent.set()
        return answer()

    settings.model.batch_size = 1
    pages = [make_page(tmp_path / str(n), n) for n in (1, 2)]
    result = extract_final(pages, Invoice, ScriptedModel(reply), settings)
    assert answered_after_page_2 == [True]
    assert result.pages_failed == 0 and result.record is not None
    assert [call.page for call in result.calls] == [1, 2]  # in page order, not answer order
