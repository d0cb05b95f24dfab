"""Grounding values in page words: printed forms, spans over lines, perturbations, hints."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import Field

from pipeline.evidence import (
    DocumentIndex,
    PageWords,
    Word,
    ground_record,
    ground_value,
    must_be_grounded,
)
from pipeline.evidence.normalize import amount_in, dates_in
from schemas.base import ExtractionSchema
from schemas.invoice import Invoice
from schemas.types import Money


def page(lines: list[str], number: int = 1, x0: int = 0) -> PageWords:
    """Words laid out 10 px per character, 20 px per line, 5 px between words."""
    words = []
    for line_no, line in enumerate(lines):
        x = x0
        for text in line.split():
            words.append(
                Word(text, (x, line_no * 20, x + 10 * len(text), line_no * 20 + 15), None, line_no)
            )
            x += 10 * len(text) + 5
    return PageWords(number, 2000, 2000, 200, "text_layer", tuple(words))


def index(*lines: str) -> DocumentIndex:
    return DocumentIndex.build([page(list(lines))])


@pytest.mark.parametrize(
    ("printed", "value"),
    [
        ("Total 1.234,56", "1234.56"),
        ("Total 1,234.56", "1234.56"),
        ("Total 1 234,56 EUR", "1234.56"),
        ("Discount (150.00)", "-150.00"),
        ("Amount $1,200", "1200"),
        ("TOTAL RM 8.20", "8.20"),
        ("Summe: 25'392.15", "25392.15"),
        ("Total: 4 117,80 €", "4117.80"),
        ("VAT 23%", "23"),
    ],
)
def test_amount_printed_forms(printed: str, value: str) -> None:
    found = ground_value("total", value, "amount", index("Invoice", printed))
    assert found.kind == ("exact" if value in printed.split() else "normalized")
    assert found.page == 1 and found.box is not None
    assert found.box[1] == 20  # on the second line


@pytest.mark.parametrize(
    ("printed", "value"),
    [
        ("Date 02 Juillet 2015", "2015-07-02"),
        ("Date 07/02/2015", "2015-02-07"),
        ("Date 07/02/2015", "2015-07-02"),  # day/month order is ambiguous: both count
        ("Date 2 Feb 2015", "2015-02-02"),
        ("Date Feb 2, 2015", "2015-02-02"),
        ("Datum: 18.11.2017", "2017-11-18"),
        ("29-01-18 12:30", "2018-01-29"),
        ("am 3. März 2025", "2025-03-03"),
        ("3 November 2025", "2025-11-03"),
    ],
)
def test_date_printed_forms(printed: str, value: str) -> None:
    assert ground_value("issue_date", value, "date", index(printed)).kind == "normalized"


def test_exact_versus_normalized() -> None:
    idx = index("Total 1450.00", "IBAN: DE89 3704 0044 0532 0130 00")
    assert ground_value("total", "1450.00", "amount", idx).kind == "exact"
    iban = ground_value("iban", "DE89370400440532013000", "identifier", idx)
    assert iban.kind == "normalized"
    assert iban.matched_text == "DE89 3704 0044 0532 0130 00"
    assert ground_value("iban", "DE89 3704 0044 0532 0130 00", "identifier", idx).kind == "exact"


def test_text_over_several_lines_and_columns() -> None:
    left = ["Block C, Ballycoolin", "Business Park,", "Dublin 15"]
    right = ["Invoice no. 1", "Due date 2025-01-01", "PO 7"]
    words = list(page(left).words) + list(page(right, x0=900).words)
    idx = DocumentIndex.build([PageWords(1, 2000, 2000, 200, "text_layer", tuple(words))])
    found = ground_value(
        "buyer.address", "Block C, Ballycoolin Business Park, Dublin 15", "text", idx
    )
    assert found.kind == "exact"  # a line break is spacing
    lower = ground_value(
        "buyer.address", "block c ballycoolin business park dublin 15", "text", idx
    )
    assert lower.kind == "normalized"
    assert found.box == (0, 0, 190, 55)  # the union of the left column's three lines


def test_fuzzy_text_only() -> None:
    idx = index("Seller: Corrib Cloud Servces Ltd")
    assert ground_value("seller.name", "Corrib Cloud Services Ltd", "text", idx).kind == "fuzzy"
    assert (
        ground_value("invoice_number", "INV-2025-0318", "identifier", index("INV-2025-0319")).kind
        == "not_found"
    )


@pytest.mark.parametrize(
    ("kind", "true", "wrong"),
    [
        ("amount", "4654.14", "4655.14"),  # one digit changed
        ("amount", "4654.14", "4645.14"),  # two digits swapped
        ("amount", "4654.14", "1284.60"),  # another document's value
        ("amount", "4654.14", "3317.09"),  # made up
        ("date", "2025-03-14", "2025-03-15"),  # shifted date
        ("identifier", "INV-2025-0318", "INV-2025-0381"),
    ],
)
def test_each_perturbation_is_flagged(kind: str, true: str, wrong: str) -> None:
    idx = index("Invoice no. INV-2025-0318 Date 14/03/2025", "Total due 4,654.14 EUR")
    assert ground_value("x", true, kind, idx).kind in ("exact", "normalized")  # type: ignore[arg-type]
    assert ground_value("x", wrong, kind, idx).kind == "not_found"  # type: ignore[arg-type]


def test_closest_printed_amount() -> None:
    found = ground_value("total", "4654.14", "amount", index("Total 4,645.14", "Tax 12.00"))
    assert found.kind == "not_found"
    assert found.closest == ("4,645.14", 1)


def test_hint_page_and_occurrence() -> None:
    idx = DocumentIndex.build([page(["Total 10.00"], 1), page(["Total 10.00"], 2)])
    assert ground_value("t", "10.00", "amount", idx).page == 1
    hinted = ground_value("t", "10.00", "amount", idx, hint=(2, None))
    assert (hinted.page, hinted.occurrence) == (2, 2)


def test_unavailable_pages() -> None:
    unreadable = PageWords(2, 100, 100, 200, "ocr", (), unavailable="tesseract missing")
    idx = DocumentIndex.build([page(["Total 1.00"]), unreadable])
    assert ground_value("t", "1.00", "amount", idx).kind == "exact"
    assert ground_value("t", "2.00", "amount", idx).kind == "unavailable"
    assert (
        ground_value("t", "2.00", "amount", DocumentIndex.build([unreadable])).kind == "unavailable"
    )


def test_record_paths_and_kinds() -> None:
    record = Invoice(
        invoice_number="A-1",
        issue_date="2025-03-14",
        currency="EUR",
        total="10.00",
        line_items=[{"description": "Widget", "amount": "10.00"}],
    ).model_dump(mode="json")
    idx = index("Invoice A-1 of 14.03.2025", "Widget 10,00 €")
    groundings = ground_record(record, idx, Invoice)
    assert groundings["line_items[0].amount"].kind == "normalized"
    assert groundings["currency"].kind == "normalized"  # the € sign
    assert groundings["invoice_number"].value_kind == "identifier"
    assert groundings["issue_date"].matched_text == "14.03.2025"
    assert set(groundings) == {
        "invoice_number", "issue_date", "currency", "total",
        "line_items[0].description", "line_items[0].amount",
    }  # fmt: skip


class Custom(ExtractionSchema):
    schema_name = "custom-grounded"
    schema_version = "1"

    reference: str | None = Field(None, json_schema_extra={"grounded": True})
    fee: Money | None = None
    note: str | None = None
    booking_no: str | None = Field(None, json_schema_extra={"grounded": False})


def test_must_be_grounded_declared_and_default() -> None:
    assert must_be_grounded(Custom, "reference")
    assert must_be_grounded(Custom, "fee")  # money by default
    assert not must_be_grounded(Custom, "note")
    assert not must_be_grounded(Custom, "booking_no")  # opted out
    assert must_be_grounded(Invoice, "line_items[3].amount")
    assert must_be_grounded(Invoice, "seller.tax_id")
    assert not must_be_grounded(Invoice, "line_items[0].quantity")
    assert not must_be_grounded(Invoice, "seller.name")


def test_amount_and_date_parsers_reject_lookalikes() -> None:
    assert amount_in("PO-77120") is None
    assert amount_in("INV-2025-0318") is None
    assert dates_in("31/02/2025") == set()
    assert len(dates_in("03/04/2025")) == 2


def test_grounding_a_hundred_fields_is_fast() -> None:
    import time

    lines = [f"Item {i} widget model W{i * 7} price {i * 3},{i % 100:02d} EUR" for i in range(100)]
    idx = DocumentIndex.build([page(lines[k * 20 : k * 20 + 20], k + 1) for k in range(5)])
    record: dict[str, Any] = {
        "items": [{"model": f"W{i * 7}", "price": f"{i * 3}.{i % 100:02d}"} for i in range(50)]
    }
    record["missing"] = [f"a text nobody printed, number {i}" for i in range(5)]
    start = time.perf_counter()
    groundings = ground_record(record, idx)
    assert time.perf_counter() - start < 0.25
    assert sum(g.kind == "not_found" for g in groundings.values()) == 5


def test_evidence_imports_point_down() -> None:
    """pipeline/evidence never imports the store, backends, flows or the CLI."""
    import ast
    from pathlib import Path

    package = Path(__file__).resolve().parent.parent / "pipeline" / "evidence"
    forbidden = ("pipeline.store", "pipeline.backends", "pipeline.cli", "flows", "torch")
    for source in package.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            names = (
                [a.name for a in node.names] if isinstance(node, ast.Import)
                else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            )  # fmt: skip
            for name in names:
                assert not name.startswith(forbidden), f"{source.name} imports {name}"
