"""The built-in schemas: normalization, business rules with their tolerances, merge rules,
grammar bounds, and several schemas per document through the runner."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import select

from pipeline.backends.grammar import compile_json_schema
from pipeline.backends.scripted import ScriptedModel
from pipeline.prompts import extraction_prompt
from pipeline.runner import process, register
from pipeline.settings import Settings
from pipeline.store.db import open_database, session_factory
from pipeline.store.models import Extraction
from pipeline.types import VisionRequest
from schemas import BUILT_INS, get_schema, known_schemas
from schemas.chart import Chart
from schemas.form import Form, FormField
from schemas.invoice import Invoice
from schemas.table import Table
from schemas.types import CurrencyCode, Iban, IsoDate, iban_checksum_ok, parse_amount

SAMPLES = Path(__file__).resolve().parents[1] / "sample_docs"


def sample_record(document: str, schema: str) -> dict[str, Any]:
    return json.loads((SAMPLES / document).with_suffix(".json").read_text())["records"][schema]


# --- field types ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("printed", "value"),
    [
        ("1.234,56", "1234.56"),
        ("1,234.56", "1234.56"),
        ("1 234,56 €", "1234.56"),
        ("CHF 25'392.15", "25392.15"),
        ("(12.00)", "-12.00"),
        ("(150,00)", "-150.00"),
        ("$ 1,200", "1200"),
        ("12.50-", "-12.50"),
        ("−7,5", "-7.5"),
        ("1,5", "1.5"),
    ],
)
def test_amounts_are_normalized_from_what_people_print(printed: str, value: str) -> None:
    assert parse_amount(printed) == Decimal(value)


@pytest.mark.parametrize("printed", ["12.34.56,7,8", "abc", "1.2.3,4,5"])
def test_unreadable_amounts_are_refused(printed: str) -> None:
    with pytest.raises(ValueError):
        parse_amount(printed)


def test_iban_is_grouped_and_its_check_digits_verified() -> None:
    assert TypeAdapter(Iban).validate_python("de89 3704-0044 0532 0130 00") == (
        "DE89 3704 0044 0532 0130 00"
    )
    assert iban_checksum_ok("DE89 3704 0044 0532 0130 00")
    assert not iban_checksum_ok("DE88 3704 0044 0532 0130 00")  # one digit misread
    with pytest.raises(ValidationError):
        TypeAdapter(Iban).validate_python("not an iban")


def test_dates_and_currencies_are_normalized() -> None:
    assert TypeAdapter(IsoDate).validate_python("06.05.2025") == date(2025, 5, 6)
    assert TypeAdapter(IsoDate).validate_python("2025-05-06") == date(2025, 5, 6)
    with pytest.raises(ValidationError):  # day or month first? refused, not guessed
        TypeAdapter(IsoDate).validate_python("05/06/2025")
    assert TypeAdapter(CurrencyCode).validate_python("€") == "EUR"
    assert TypeAdapter(CurrencyCode).validate_python(" chf ") == "CHF"


# --- invoice rules --------------------------------------------------------------------------------

GOOD: dict[str, Any] = {
    "invoice_number": "INV-1",
    "issue_date": "2025-03-01",
    "due_date": "2025-03-31",
    "line_items": [
        {"description": "A", "quantity": "2", "unit_price": "50.00", "amount": "100.00"},
        {"description": "B", "quantity": "1", "unit_price": "20.00", "amount": "20.00"},
    ],
    "subtotal": "120.00",
    "tax_lines": [{"rate": "19", "amount": "22.80"}],
    "tax_total": "22.80",
    "total": "142.80",
    "iban": "DE89 3704 0044 0532 0130 00",
}


def invoice(**changes: Any) -> Invoice:
    return Invoice.model_validate({**GOOD, **changes})


def test_a_consistent_invoice_has_no_review_reasons() -> None:
    assert invoice().review_reasons() == []


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        (
            {"line_items": [{**GOOD["line_items"][0], "amount": "100.02"}, GOOD["line_items"][1]]},
            "line 1: amount 100.02 != quantity 2 x unit price 50.00 (= 100.00, tolerance 0.01)",
        ),
        ({"subtotal": "121.00", "total": "143.80"}, "line items sum to 120.00, subtotal is 121.00"),
        ({"tax_total": "22.00", "total": "142.00"}, "tax lines sum to 22.80, tax total is 22.00"),
        ({"total": "150.00"}, "subtotal 120.00 + tax 22.80 != total 150.00 (tolerance 0.02)"),
        ({"due_date": "2025-02-28"}, "due date 2025-02-28 is before issue date 2025-03-01"),
        ({"iban": "DE88 3704 0044 0532 0130 00"}, "fails its check digits"),
        ({"invoice_number": None}, "required field 'invoice_number' is missing"),
    ],
)
def test_each_rule_gives_a_readable_reason(changes: dict[str, Any], reason: str) -> None:
    reasons = invoice(**changes).review_reasons()
    assert len(reasons) == 1 and reason in reasons[0], reasons


def test_tolerances_are_explicit_and_inclusive() -> None:
    one_cent = [{**GOOD["line_items"][0], "amount": "100.01"}, GOOD["line_items"][1]]
    assert invoice(line_items=one_cent, subtotal="120.01", total="142.81").review_reasons() == []
    assert invoice(total="142.82").review_reasons() == []  # 0.02 on the total is rounding
    assert invoice(total="142.83").review_reasons() != []


def test_tax_lines_stand_in_for_a_missing_tax_total() -> None:
    assert invoice(tax_total=None).review_reasons() == []
    assert "+ tax 22.80 != total" in invoice(tax_total=None, total="150.00").review_reasons()[0]


# --- form, table, chart ---------------------------------------------------------------------------


def test_form_values_are_normalized_by_kind_and_marks_checked() -> None:
    fields = [
        FormField(label="Turnover", kind="number", value="12,450,000"),
        FormField(label="Signed on", kind="date", value="03.02.2025"),
        FormField(label="ISO 9001", kind="checkbox", checked=True),
    ]
    form = Form(title="T", fields=fields)
    assert [f.value for f in form.fields[:2]] == ["12450000", "2025-02-03"]
    assert form.review_reasons() == []
    assert form.get("iso  9001") is fields[2]


def test_form_fields_that_cannot_be_read_as_their_kind_need_review() -> None:
    form = Form(
        fields=[
            FormField(label="Employees", kind="number", value="about ten"),
            FormField(label="Start", kind="date", value="next Monday"),
            FormField(label="Newsletter", kind="checkbox"),
            FormField(label="Signature", kind="signature"),
        ]
    )
    assert form.review_reasons() == [
        "'Employees' (number): value 'about ten' is not a number",
        "'Start' (date): value 'next Monday' is not a date (YYYY-MM-DD)",
        "'Newsletter' (checkbox): not read as ticked or not",
        "'Signature' (signature): not read as signed or not",
    ]
    assert Form().review_reasons() == ["required field 'fields' is missing"]


def test_a_table_continued_on_the_next_page_is_one_table() -> None:
    page1 = Table(title="Shipments", columns=["Date", "Qty"], rows=[["01.09", "3"], ["02.09", "5"]])
    page2 = Table(  # repeated header read as a row, and the last row of page 1 again
        title="Shipments (continued)",
        columns=["Date", "Qty"],
        rows=[["date", "qty"], ["02.09", "5"], ["03.09", "7"]],
        notes=["Gross weights."],
    )
    merged = Table.merge([page1, page2])
    assert merged.title == "Shipments" and merged.columns == ["Date", "Qty"]
    assert merged.rows == [["01.09", "3"], ["02.09", "5"], ["03.09", "7"]]
    assert merged.notes == ["Gross weights."]
    assert merged.cells()[-1].column == "Qty" and merged.row_dicts()[0] == {
        "Date": "01.09",
        "Qty": "3",
    }


def test_a_table_row_that_does_not_fit_the_headers_needs_review() -> None:
    table = Table(columns=["A", "B", "C"], rows=[["1", "2", "3"], ["4", "5"]])
    assert table.review_reasons() == ["row 2 has 2 cells for 3 columns"]


def test_chart_highest_value_and_merge_of_tiles() -> None:
    chart = Chart.model_validate(sample_record("chart-energy-line.png", "chart"))
    highest, lowest = chart.highest(), chart.lowest()
    assert highest and (highest.series, highest.label, highest.value) == (
        "Plant A",
        "Jan",
        Decimal("412"),
    )
    assert lowest and (lowest.series, lowest.value) == ("Plant B", Decimal("238"))
    left = Chart.model_validate(
        {
            **chart.model_dump(),
            "series": [
                {"name": s.name, "points": [p.model_dump() for p in s.points[:4]]}
                for s in chart.series
            ],
        }
    )
    right = Chart.model_validate(
        {
            "series": [
                {"name": s.name, "points": [p.model_dump() for p in s.points[3:]]}
                for s in chart.series
            ]
        }
    )
    assert Chart.merge([left, right]) == chart  # same series joined, the shared point kept once


def test_chart_points_without_values_need_review() -> None:
    chart = Chart.model_validate(
        {"series": [{"name": "A", "points": [{"label": "Q1", "value": None}]}, {"name": "B"}]}
    )
    assert chart.review_reasons() == ["'A': no value read for Q1", "'B' has no data points"]


# --- grammar and prompt ---------------------------------------------------------------------------


def _nodes(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        return [node] + [n for value in node.values() for n in _nodes(value)]
    if isinstance(node, list):
        return [n for value in node for n in _nodes(value)]
    return []


@pytest.mark.parametrize("schema", BUILT_INS, ids=lambda s: s.schema_name)
def test_grammar_bounds_every_string_list_and_number(schema: type) -> None:
    grammar = schema.grammar_schema()
    for node in _nodes(grammar):
        kind = node.get("type")
        if kind == "string":
            assert "enum" in node or "maxLength" in node, node
        elif kind == "array":
            assert "maxItems" in node, node
        assert kind not in ("number", "integer"), f"unbounded JSON number: {node}"
    compile_json_schema(grammar)  # llguidance accepts it


@pytest.mark.parametrize("schema", BUILT_INS, ids=lambda s: s.schema_name)
def test_prompt_is_built_from_field_descriptions(schema: type) -> None:
    prompt = extraction_prompt(schema)
    assert schema.summary in prompt
    for name, info in schema.model_fields.items():
        assert f"- {name}: {info.description}" in prompt


def test_registry_lists_the_built_ins_with_versions() -> None:
    known = known_schemas()
    assert {"invoice", "form", "table", "chart"} <= set(known)
    assert get_schema("table") is Table and Invoice.schema_version == "1.1"


# --- several schemas per document -----------------------------------------------------------------


def answer_by_schema(request: VisionRequest, number: int) -> str:
    """The invoice truth to an invoice request, a table with a short row to a table request."""
    keys = set((request.json_schema or {}).get("properties", {}))
    if "line_items" in keys:
        return json.dumps(sample_record("invoice-born-digital.pdf", "invoice"))
    table = sample_record("invoice-born-digital.pdf", "table")
    table["rows"][0] = table["rows"][0][:-1]
    return json.dumps(table)


def test_invoice_and_table_from_one_document_each_with_its_own_status(
    settings: Settings,
) -> None:
    settings.schemas = ["invoice", "table"]
    factory = session_factory(open_database(settings.db_url.get_secret_value()))
    document = SAMPLES / "invoice-born-digital.pdf"
    model = ScriptedModel(answer_by_schema)
    outcomes = process(factory, register(factory, document, settings), settings, model=model)
    assert {o.schema: o.status for o in outcomes} == {
        "invoice": "succeeded",
        "table": "needs_review",
    }
    assert (
        next(o.reason for o in outcomes if o.schema == "table") == "row 1 has 5 cells for 6 columns"
    )
    with factory() as session:
        stored = {e.schema_name: e for e in session.scalars(select(Extraction))}
    assert stored["invoice"].record == sample_record("invoice-born-digital.pdf", "invoice")
    assert stored["table"].schema_version == "1.0"
    assert Table.model_validate(stored["table"].record).columns[1] == "Description"
