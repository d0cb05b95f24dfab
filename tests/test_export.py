"""Exports on SQLite and PostgreSQL: every format round-trips to the stored records."""

from __future__ import annotations

import csv
import json
import sys
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from _seed import seed
from pydantic import BaseModel, condecimal
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.errors import ConfigError
from pipeline.export.columns import schema_shape
from pipeline.export.write import (
    PROVENANCE_COLUMNS,
    child_csv_path,
    csv_cell,
    export,
    export_rows,
    write_parquet,
)
from pipeline.store.db import open_database, session_factory
from pipeline.store.queries import Selection
from schemas.custom import schema_from_json_file
from schemas.invoice import Invoice

RECORDS = {
    "a.png": {
        "invoice_number": "INV-1",
        "issue_date": "2025-03-14",
        "total": "119.00",
        "seller": {"name": "ACME, Inc.", "address": 'Main St. 1 "rear"'},
        "line_items": [
            {"description": "Widget", "quantity": "2", "unit_price": "50.00", "amount": "100.00"},
            {
                "description": "Ünïcode\nline",
                "quantity": "1",
                "unit_price": "0.00",
                "amount": "0.00",
            },
        ],
    },
    "b.png": {"invoice_number": "INV-2", "total": None, "line_items": []},
}


@pytest.fixture
def stored(db_url: str, tmp_path: Path) -> tuple[Any, list[dict[str, Any]]]:
    """Two succeeded invoices (full records as the schema dumps them) and one failure."""
    factory = session_factory(open_database(db_url))
    for name, values in RECORDS.items():
        record = Invoice.model_validate(values).model_dump(mode="json")
        seed(factory, tmp_path / "in", name, "succeeded", record=record)
    seed(factory, tmp_path / "in", "c.png", "failed", category="corrupt")
    with factory() as session:
        rows = export_rows(session, Selection(statuses=("succeeded",)))
    assert [r["record"]["invoice_number"] for r in rows] == ["INV-1", "INV-2"]
    return factory, rows


def test_jsonl_round_trip(
    stored: tuple[Any, list[dict[str, Any]]], tmp_path: Path, db_url: str
) -> None:
    _, rows = stored
    out = tmp_path / "out" / "invoices.jsonl"
    result = CliRunner().invoke(
        app, ["export", "--format", "jsonl", "--db", db_url, "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "exported 2 record(s)" in result.output  # succeeded only, by default
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert lines == rows


def test_csv_round_trip_with_line_items_in_their_own_file(
    stored: tuple[Any, list[dict[str, Any]]], tmp_path: Path
) -> None:
    factory, rows = stored
    out = tmp_path / "invoices.csv"
    with factory() as session:
        result = export(session, Selection(statuses=("succeeded",), schema="invoice"), "csv", out)
    items_file = child_csv_path(out, "line_items")
    assert result.rows == 2 and out in result.files and items_file in result.files
    main = read_csv(out)
    for written, row in zip(main, rows, strict=True):
        for column in PROVENANCE_COLUMNS:
            assert written[column] == csv_cell(row[column]), column
        record = row["record"]
        assert written["record.invoice_number"] == record["invoice_number"]
        assert written["record.total"] == csv_cell(record["total"])
        assert written["record.seller.name"] == csv_cell((record["seller"] or {}).get("name"))
        assert written["record.buyer.name"] == ""  # a null object still has its columns
        assert not any(c.startswith("record.line_items") for c in written)
    items = read_csv(items_file)
    expected = [
        (str(row["extraction_id"]), str(number), item["description"], item["amount"])
        for row in rows
        for number, item in enumerate(row["record"]["line_items"], start=1)
    ]
    assert [
        (i["extraction_id"], i["item"], i["description"], i["amount"]) for i in items
    ] == expected
    assert read_csv(child_csv_path(out, "tax_lines")) == []  # the file exists, with its header


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_parquet_round_trip(stored: tuple[Any, list[dict[str, Any]]], tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    factory, rows = stored
    out = tmp_path / "invoices.parquet"
    with factory() as session:
        export(session, Selection(statuses=("succeeded",)), "parquet", out)
    table = pq.read_table(out)
    record_type = table.schema.field("record").type
    assert str(record_type.field("total").type) == "decimal128(38, 2)"
    assert str(record_type.field("issue_date").type) == "date32[day]"
    item_type = record_type.field("line_items").type.value_type
    assert str(item_type.field("quantity").type) == "decimal128(38, 3)"
    assert str(item_type.field("amount").type) == "decimal128(38, 2)"
    read = table.to_pylist()
    assert read[0]["record"]["total"] == Decimal("119.00")
    assert read[0]["record"]["issue_date"] == date(2025, 3, 14)
    for written, row in zip(read, rows, strict=True):
        # the same values (equal decimals: 2.000 is the 2 that was stored)
        assert Invoice.model_validate(written["record"]) == Invoice.model_validate(row["record"])
        assert json.loads(written["provenance"]) == row["provenance"]
        assert {k: written[k] for k in PROVENANCE_COLUMNS} == {
            k: row[k] for k in PROVENANCE_COLUMNS
        }


class Stop(BaseModel):
    fare: Decimal | None = None


class Trip(BaseModel):
    price: Decimal | None = None
    weight: condecimal(decimal_places=1) | None = None  # type: ignore[valid-type]
    day: date | None = None
    departs: datetime | None = None
    stops: list[Stop] = []


def test_parquet_types_custom_schemas_from_their_fields(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    trip = Trip(price="12.5", weight="70.2", day="2025-03-14", departs="2025-03-14T08:00:00Z")
    trip.stops = [Stop(fare="0.123456")]
    receipt = tmp_path / "receipt.json"
    receipt.write_text(
        json.dumps(
            {
                "type": "object",
                "properties": {
                    "paid_on": {"type": "string", "format": "date"},
                    "total": {"type": "number"},
                },
            }
        )
    )
    receipt_schema = schema_from_json_file(receipt)
    cases = [
        (Trip, trip.model_dump(mode="json")),
        (receipt_schema, {"paid_on": "2025-03-14", "total": 9.5}),
    ]
    for model, record in cases:
        out = tmp_path / f"{model.__name__}.parquet"
        write_parquet([{"record": record}], out, schema_shape(model))
        types = {f.name: str(f.type) for f in pq.read_table(out).schema.field("record").type}
        read = pq.read_table(out).to_pylist()[0]["record"]
        assert model.model_validate(read) == model.model_validate(record)
        if model is Trip:
            assert types["price"] == "decimal128(38, 6)"  # no places declared: 6, as the grammar
            assert types["weight"] == "decimal128(38, 1)"
            assert types["day"] == "date32[day]" and types["departs"] == "string"
            assert types["stops"].endswith("struct<fare: decimal128(38, 6)>>")
            assert read["price"] == Decimal("12.5") and read["day"] == date(2025, 3, 14)
        else:
            assert types == {"paid_on": "date32[day]", "total": "double"}


def test_parquet_without_pyarrow_says_what_to_install(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    factory = session_factory(open_database(sqlite_url))
    with factory() as session, pytest.raises(ConfigError, match=r"docextract\[export\]"):
        export(session, Selection(), "parquet", tmp_path / "x.parquet")


def test_csv_needs_one_schema(sqlite_url: str, tmp_path: Path) -> None:
    factory = session_factory(open_database(sqlite_url))
    seed(factory, tmp_path, "i.png", "succeeded", record={})
    seed(factory, tmp_path, "f.png", "succeeded", record={}, schema="form-v0")
    with factory() as session, pytest.raises(ConfigError, match="pass --schema"):
        export(session, Selection(statuses=("succeeded",)), "csv", tmp_path / "x.csv")
