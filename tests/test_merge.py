"""Merging tile partials with their boxes: unit rules, then through `extract()` with a scripted
backend whose answer depends on which part of the page the prompt says the tile is."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, ClassVar

from _extract import extract_final
from PIL import Image
from pydantic import Field
from test_tiling import text_page

from pipeline.backends.scripted import ScriptedModel
from pipeline.settings import Settings
from pipeline.types import PageImage, Status, VisionRequest
from schemas.base import ExtractionSchema
from schemas.invoice import Invoice
from schemas.merge import merge_pages, reading_rows

UPPER, LOWER = (0, 0, 1654, 1300), (0, 1000, 1654, 2339)  # stacked tiles, 300 px shared
LEFT, RIGHT = (0, 0, 900, 1800), (750, 0, 1654, 1800)  # side by side, 150 px shared


def item(description: str | None, quantity: str | None, price: str | None, amount: str | None):
    return {"description": description, "quantity": quantity, "unit_price": price, "amount": amount}


def invoice(**fields: Any) -> Invoice:
    return Invoice.model_validate(fields)


def descriptions(record: Invoice) -> list[str | None]:
    return [i.description for i in record.line_items]


def test_a_value_seen_in_two_overlapping_tiles_is_kept_once() -> None:
    shared = item("Support hours", "7.5", "95.00", "712.50")
    upper = invoice(
        invoice_number="INV-7", line_items=[item("Hosting", "1", "10.00", "10.00"), shared]
    )
    lower = invoice(invoice_number="INV-7", total="722.50", line_items=[shared])
    merged = Invoice.merge_tiles([upper, lower], [UPPER, LOWER])
    assert merged.invoice_number == "INV-7" and str(merged.total) == "722.50"
    assert descriptions(merged) == ["Hosting", "Support hours"]


def test_a_line_item_split_across_stacked_tiles_is_joined() -> None:
    # the upper tile sees row 2 cut at its bottom edge: the amount column is not legible there
    upper = invoice(line_items=[item("A", "1", "10.00", "10.00"), item("B", "2", "5.00", None)])
    lower = invoice(line_items=[item("B", "2", None, "10.00"), item("C", "3", "1.00", "3.00")])
    merged = Invoice.merge_tiles([lower, upper], [LOWER, UPPER])  # any order: boxes decide
    assert descriptions(merged) == ["A", "B", "C"]
    joined = merged.line_items[1]
    assert (str(joined.unit_price), str(joined.amount)) == ("5.00", "10.00")


def test_a_description_cut_short_by_the_tile_edge_joins_its_full_row() -> None:
    upper = invoice(line_items=[item("Cloud hosting, production", "1", None, None)])
    lower = invoice(
        line_items=[item("Cloud hosting, production cluster (March)", "1", "1450.00", "1450.00")]
    )
    merged = Invoice.merge_tiles([upper, lower], [UPPER, LOWER])
    assert descriptions(merged) == ["Cloud hosting, production cluster (March)"]


def test_rows_of_tiles_that_do_not_overlap_are_not_joined() -> None:
    apart = (0, 1400, 1654, 2339)  # starts below the upper tile: no row can be in both
    upper = invoice(line_items=[item("Widget", "1", "50.00", None)])
    lower = invoice(line_items=[item("Widget", "1", "50.00", "50.00")])
    assert len(Invoice.merge_tiles([upper, lower], [UPPER, apart]).line_items) == 2
    # rows repeated exactly are kept once whatever the boxes (the page rule)
    again = invoice(line_items=[item("Widget", "1", "50.00", None)])
    assert len(Invoice.merge_tiles([upper, again], [UPPER, apart]).line_items) == 1


def test_left_and_right_halves_of_table_rows_are_joined() -> None:
    left = invoice(
        invoice_number="INV-9", line_items=[item("A", "1", None, None), item("B", "2", None, None)]
    )
    right = invoice(
        line_items=[item(None, None, "10.00", "10.00"), item(None, None, "4.00", "8.00")]
    )
    merged = Invoice.merge_tiles([right, left], [RIGHT, LEFT])
    assert descriptions(merged) == ["A", "B"]
    assert [str(i.amount) for i in merged.line_items] == ["10.00", "8.00"]
    assert merged.invoice_number == "INV-9"


def test_most_tiles_win_a_disagreement_and_ties_go_to_reading_order() -> None:
    boxes = [(0, 0, 800, 800), (700, 0, 1654, 800), (0, 700, 800, 1600)]
    votes = [invoice(total="10.00"), invoice(total="19.00"), invoice(total="19.00")]
    assert str(Invoice.merge_tiles(votes, boxes).total) == "19.00"
    tie = [invoice(currency="EUR"), invoice(currency="USD")]
    assert Invoice.merge_tiles(tie[::-1], [RIGHT, LEFT]).currency == "EUR"  # LEFT reads first


def test_the_global_view_only_fills_what_the_tiles_left_empty() -> None:
    tile = invoice(invoice_number="INV-3", line_items=[item("A", "1", "10.00", "10.00")])
    overview = invoice(
        invoice_number="INV-8",  # misread at low resolution: the tile's reading stays
        buyer={"name": "Fennwick Logistics Ltd"},
        line_items=[item("A", "1", "10.00", "10.00"), item("Ghost", "1", "1.00", "1.00")],
    )
    merged = Invoice.merge_tiles([overview, tile], [None, UPPER])
    assert merged.invoice_number == "INV-3"
    assert merged.buyer is not None and merged.buyer.name == "Fennwick Logistics Ltd"
    assert descriptions(merged) == ["A"]
    alone = Invoice.merge_tiles([overview, invoice()], [None, UPPER])
    assert descriptions(alone) == ["A", "Ghost"]  # no tile found rows: the overview's count


def test_page_level_merge_keeps_its_rules() -> None:
    first = invoice(invoice_number="INV-1", line_items=[item("A", "1", "1.00", "1.00")])
    second = invoice(
        invoice_number="INV-2",
        line_items=[item("A", "1", "1.00", "1.00"), item("B", "1", "2.00", "2.00")],
    )
    merged = Invoice.merge([first, second])
    assert merged.invoice_number == "INV-1" and descriptions(merged) == ["A", "B"]
    assert merge_pages([None, {"a": [1]}, {"a": [1, 2]}]) == {"a": [1, 2]}


def test_reading_rows_group_tiles_by_height_then_left_to_right() -> None:
    boxes = [(800, 900, 1600, 1700), (0, 0, 800, 800), (0, 900, 800, 1700), (800, 20, 1600, 820)]
    assert reading_rows(boxes) == [[1, 3], [2, 0]]


class Notes(ExtractionSchema):
    """A schema with its own `merge`: it gets the tiles in reading order, overview last."""

    schema_name: ClassVar[str] = "notes"
    schema_version: ClassVar[str] = "1"
    lines: list[str] = Field(default_factory=list)

    @classmethod
    def merge(cls, partials):  # type: ignore[no-untyped-def, override]
        return cls(lines=[line for p in partials for line in p.lines])


def test_a_schema_with_its_own_merge_gets_tiles_in_reading_order() -> None:
    parts = [Notes(lines=["whole"]), Notes(lines=["bottom"]), Notes(lines=["top"])]
    merged = Notes.merge_tiles(parts, [None, LOWER, UPPER])
    assert merged.lines == ["top", "bottom", "whole"]


# --- through extract() with a scripted backend ----------------------------------------------------

PART = re.compile(r"part (\d+) of (\d+) of page (\d+)")


def tall_page(tmp_path: Path, image: Image.Image | None = None) -> PageImage:
    image = image or Image.new("RGB", (1654, 2339), "white")
    path = tmp_path / "p0001.png"
    image.save(path)
    return PageImage(number=1, path=path, width=image.width, height=image.height, dpi=200)


def by_part(replies: dict[int, dict[str, Any]]):  # -> Script
    """Answer each tile with `replies[part]` (the part number its prompt names)."""

    def script(request: VisionRequest, number: int) -> str:
        found = PART.search(request.prompt)
        assert found, f"a tile prompt must say which part it is: {request.prompt[:300]!r}"
        return json.dumps(replies[int(found.group(1))])

    return script


def test_extract_joins_a_row_split_across_stacked_tiles(tmp_path: Path, settings: Settings) -> None:
    settings.tiling.strategy = "grid"
    settings.tiling.grid_rows, settings.tiling.grid_cols, settings.tiling.overlap = 2, 1, 0.2
    upper = {
        "invoice_number": "INV-5",
        "issue_date": "2025-03-14",
        "line_items": [item("A", "1", "10.00", "10.00"), item("B", "2", "5.00", None)],
    }
    lower = {
        "invoice_number": "INV-5",
        "line_items": [item("B", "2", "5.00", "10.00"), item("C", "1", "3.00", "3.00")],
        "subtotal": "23.00",
        "tax_total": "0",
        "total": "23.00",
    }
    model = ScriptedModel(by_part({1: upper, 2: lower}))
    result = extract_final([tall_page(tmp_path)], Invoice, model, settings)
    assert len(model.requests) == 2
    assert "part 1 of 2 of page 1" in model.requests[0].prompt
    assert result.status is Status.SUCCEEDED, result.review_reasons
    assert result.record is not None and result.record["invoice_number"] == "INV-5"
    assert [i["description"] for i in result.record["line_items"]] == ["A", "B", "C"]
    assert result.record["line_items"][1]["amount"] == "10.00"
    boxes = [tuple(c.box) for c in result.calls]
    assert boxes[0][3] > boxes[1][1], "the two tiles overlap"


def test_extract_with_auto_tiles_and_global_view(tmp_path: Path, settings: Settings) -> None:
    settings.tiling.global_view = True
    header = {"invoice_number": "INV-6", "issue_date": "2025-01-02"}
    rows = {"line_items": [item("A", "1", "10.00", "10.00")], "total": "10.00"}
    overview = {
        "invoice_number": "INV-0",
        "buyer": {"name": "Kestrel Architects LLP"},
        "total": "10.00",
    }

    def script(request: VisionRequest, number: int) -> str:
        if "whole of page 1" in request.prompt:
            return json.dumps(overview)
        part = PART.search(request.prompt)
        assert part is not None
        return json.dumps(header if part.group(1) == "1" else rows)

    model = ScriptedModel(script)
    result = extract_final([tall_page(tmp_path, text_page(44))], Invoice, model, settings)
    assert len(model.requests) >= 3 and "whole of page 1" in model.requests[-1].prompt
    record = result.record
    assert record is not None and record["invoice_number"] == "INV-6"
    assert record["buyer"]["name"] == "Kestrel Architects LLP"
    assert [i["description"] for i in record["line_items"]] == ["A"] * (len(model.requests) - 2)


def test_a_reask_keeps_the_tile_note(tmp_path: Path, settings: Settings) -> None:
    settings.tiling.strategy = "grid"
    settings.tiling.grid_rows, settings.tiling.grid_cols = 2, 1
    answers = iter(["{broken", json.dumps({"invoice_number": "X"}), json.dumps({"total": "1.00"})])
    model = ScriptedModel(lambda request, number: next(answers))
    extract_final([tall_page(tmp_path)], Invoice, model, settings)
    reask = model.requests[-1].prompt
    assert "rejected" in reask and PART.search(reask) is not None
