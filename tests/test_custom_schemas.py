"""Custom schemas: `module:Model` and JSON Schema files become ExtractionSchemas the pipeline
uses like built-ins (name, version, prompt, bounded grammar, rules), or fail with a clear
configuration error."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest
from _extract import extract_final
from conftest import make_page
from sqlalchemy import select
from typer.testing import CliRunner

from pipeline.backends.grammar import compile_json_schema
from pipeline.backends.scripted import ScriptedModel
from pipeline.cli import app
from pipeline.errors import ConfigError
from pipeline.prompts import extraction_prompt
from pipeline.settings import Settings
from pipeline.types import Status
from schemas import forget_custom_schemas, get_schema, known_schemas
from schemas.base import ExtractionSchema
from schemas.custom import DEFAULT_MAX_ITEMS, DEFAULT_MAX_LENGTH

TICKET = '''
from typing import ClassVar
from pydantic import BaseModel, Field
from schemas.base import ExtractionSchema

class Ticket(BaseModel):
    """A train ticket."""
    origin: str | None = Field(None, description="Departure station.")
    price: float | None = Field(None, description="Price paid.")
    seats: int | None = None
    stops: list[str] = []

class Memo(ExtractionSchema):
    schema_name: ClassVar[str] = "memo"
    schema_version: ClassVar[str] = "3"
    required_fields: ClassVar[tuple[str, ...]] = ("subject",)
    subject: str | None = Field(None, max_length=50, description="Subject line.")

    def review_reasons(self) -> list[str]:
        shouting = self.subject is not None and self.subject.isupper()
        return super().review_reasons() + (["subject is all capitals"] if shouting else [])

class Clash(BaseModel):
    summary: str | None = None

NOT_A_MODEL = 42
'''

RECEIPT: dict[str, Any] = {
    "title": "Receipt",
    "description": "A till receipt from a shop.",
    "type": "object",
    "required": ["merchant", "total"],
    "properties": {
        "merchant": {"type": "string", "description": "Shop name."},
        "date": {"type": "string", "format": "date", "description": "Purchase date."},
        "total": {"type": "number", "description": "Amount paid."},
        "payment": {"enum": ["cash", "card"], "description": "How it was paid."},
        "items": {"type": "array", "items": {"$ref": "#/$defs/Item"}},
    },
    "$defs": {
        "Item": {
            "type": "object",
            "properties": {"name": {"type": "string", "maxLength": 40}, "qty": {"type": "integer"}},
        }
    },
}


@pytest.fixture(autouse=True)
def _forget_custom_schemas() -> Any:
    """Custom schemas register process-wide: each test starts and ends with built-ins only."""
    forget_custom_schemas()
    yield
    forget_custom_schemas()


@pytest.fixture
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module with custom models, importable under a name unique to this test."""
    name = f"custom_models_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(TICKET))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def write_schema(path: Path, schema: dict[str, Any]) -> str:
    path.write_text(json.dumps(schema))
    return str(path)


def nodes(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        return [node] + [n for value in node.values() for n in nodes(value)]
    if isinstance(node, list):
        return [n for value in node for n in nodes(value)]
    return []


def test_a_pydantic_model_becomes_a_schema(module: str) -> None:
    ticket = get_schema(f"{module}:Ticket")
    assert issubclass(ticket, ExtractionSchema)
    assert ticket.schema_name == f"{module}:Ticket" and ticket.summary == "A train ticket"
    assert ticket.schema_version.startswith("h") and len(ticket.schema_version) == 11
    assert get_schema(f"{module}:Ticket") is ticket  # loaded once
    assert f"{module}:Ticket" in known_schemas()
    forget_custom_schemas()
    assert f"{module}:Ticket" not in known_schemas() and "invoice" in known_schemas()
    assert "- origin: Departure station." in extraction_prompt(ticket)
    record = ticket.model_validate_json('{"origin":"Bern","price":"12.5","seats":2,"stops":[]}')
    assert record.model_dump(mode="json") == {
        "origin": "Bern",
        "price": 12.5,
        "seats": 2,
        "stops": [],
    }


def test_a_custom_grammar_gets_the_bounds_it_lacks(module: str) -> None:
    grammar = get_schema(f"{module}:Ticket").grammar_schema()
    properties = grammar["properties"]
    assert properties["origin"]["anyOf"][0]["maxLength"] == DEFAULT_MAX_LENGTH
    assert properties["stops"]["maxItems"] == DEFAULT_MAX_ITEMS
    assert properties["stops"]["items"]["maxLength"] == DEFAULT_MAX_LENGTH
    # an unbounded JSON number lets a model write digits forever: it becomes a bounded string
    assert properties["price"]["anyOf"][0]["type"] == "string"
    assert "maximum" in properties["seats"]["anyOf"][0]
    assert grammar["required"] == ["origin", "price", "seats", "stops"]
    assert not any(n.get("type") == "number" for n in nodes(grammar))
    compile_json_schema(grammar)


def test_an_extraction_schema_keeps_its_name_version_and_rules(module: str) -> None:
    memo = get_schema(f"{module}:Memo")
    assert (memo.schema_name, memo.schema_version) == ("memo", "3")
    assert get_schema("memo") is memo
    assert memo.model_validate({"subject": "HELLO"}).review_reasons() == ["subject is all capitals"]
    assert memo.model_validate({}).review_reasons() == ["required field 'subject' is missing"]
    assert memo.grammar_schema()["properties"]["subject"]["anyOf"][0]["maxLength"] == 50


def test_a_json_schema_file_becomes_a_schema(tmp_path: Path) -> None:
    receipt = get_schema(write_schema(tmp_path / "receipt.json", RECEIPT))
    assert receipt.schema_name == "receipt" and receipt.summary == "A till receipt from a shop"
    assert receipt.required_fields == ("merchant", "total")
    record = receipt.model_validate_json(
        '{"merchant":"Migros","date":"2025-01-02","total":"23.45","payment":"card",'
        '"items":[{"name":"Bread","qty":2}]}'
    )
    assert record.model_dump(mode="json")["items"] == [{"name": "Bread", "qty": 2}]
    assert record.review_reasons() == []
    assert receipt.model_validate({}).review_reasons() == [
        "required field 'merchant' is missing",
        "required field 'total' is missing",
    ]
    grammar = receipt.grammar_schema()
    assert grammar["properties"]["payment"]["anyOf"][0]["enum"] == ["cash", "card"]
    compile_json_schema(grammar)
    assert "- total: Amount paid." in extraction_prompt(receipt)


def test_editing_a_json_schema_makes_a_new_version(tmp_path: Path) -> None:
    path = tmp_path / "receipt.json"
    first = get_schema(write_schema(path, RECEIPT))
    changed = dict(RECEIPT, properties={**RECEIPT["properties"], "vat": {"type": "number"}})
    write_schema(path, changed)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    second = get_schema(str(path))
    assert second is not first and second.schema_version != first.schema_version
    assert (
        get_schema(write_schema(tmp_path / "v.json", dict(RECEIPT, version="2.0"))).schema_version
        == "2.0"
    )


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("no_such_module_xyz:Model", "Cannot import 'no_such_module_xyz'"),
        ("{module}:NOT_A_MODEL", "is not a Pydantic model class"),
        ("{module}:Clash", "reserves for schema metadata"),
        ("{tmp}/missing.json", "does not exist"),
        ("receipts", "Unknown schema 'receipts'"),
    ],
)
def test_bad_references_are_configuration_errors(
    reference: str, message: str, module: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=message):
        get_schema(reference.format(module=module, tmp=tmp_path))


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"type": "array"}, "top level is"),
        ({"type": "object", "properties": {}}, "has no properties"),
        (
            {
                "type": "object",
                "properties": {"a": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
            },
            "several non-null options",
        ),
        ({"type": "object", "properties": {"a": {"$ref": "http://x/y.json"}}}, "cannot resolve"),
        (
            {"title": "invoice", "type": "object", "properties": {"a": {"type": "string"}}},
            "taken by a built-in",
        ),
    ],
)
def test_json_schemas_docextract_cannot_use_say_why(
    schema: dict[str, Any], message: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=message):
        get_schema(write_schema(tmp_path / "bad.json", schema))
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ConfigError, match="Cannot read JSON Schema"):
        get_schema(str(tmp_path / "broken.json"))


def test_the_pipeline_extracts_a_custom_schema(tmp_path: Path, settings: Settings) -> None:
    receipt = get_schema(write_schema(tmp_path / "receipt.json", RECEIPT))
    reply = {"merchant": "Migros", "date": None, "total": "23.45", "payment": None, "items": []}
    model = ScriptedModel.from_replies([json.dumps(reply), json.dumps({**reply, "total": None})])
    result = extract_final([make_page(tmp_path / "p", 1)], receipt, model, settings)
    assert result.status is Status.SUCCEEDED and result.record == {**reply, "total": 23.45}
    assert model.requests[0].json_schema == receipt.grammar_schema()
    assert result.schema_name == "receipt" and result.schema_version == receipt.schema_version
    second = extract_final([make_page(tmp_path / "q", 1)], receipt, model, settings)
    assert second.status is Status.NEEDS_REVIEW
    assert second.review_reasons == ["required field 'total' is missing"]


def test_schemas_command_lists_built_ins_and_custom_ones(tmp_path: Path) -> None:
    runner = CliRunner()
    path = write_schema(tmp_path / "receipt.json", RECEIPT)
    result = runner.invoke(app, ["schemas", "--schema", path, "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert {n: rows[n]["version"] for n in ("invoice", "form", "table", "chart")} == {
        "invoice": "1.1",
        "form": "1.0",
        "table": "1.0",
        "chart": "1.0",
    }
    assert rows["receipt"]["origin"] == "custom" and rows["invoice"]["origin"] == "built-in"
    table = runner.invoke(app, ["schemas"])
    assert table.exit_code == 0 and "invoice" in table.stdout and "1.1" in table.stdout
    bad = runner.invoke(app, ["schemas", "--schema", "no_such_module_xyz:M"])
    assert bad.exit_code == 2 and "Cannot import" in bad.output


@pytest.mark.parametrize("kind", ["json", "module"])
def test_a_custom_schema_has_one_name_everywhere_and_its_extractions_rerun(
    kind: str, module: str, tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stored, shown and selected under one name (`receipt`, not `receipt.json`); a later
    process that never loaded the schema reloads it from its stored reference to rerun."""
    from PIL import Image

    from flows.rerun import rerun_document
    from pipeline.backends.scripted import empty_record_json
    from pipeline.reruns import plan_rerun, selection_from
    from pipeline.runner import process, register
    from pipeline.store import repository as repo
    from pipeline.store.db import open_database, session_factory
    from pipeline.store.models import Extraction

    monkeypatch.chdir(tmp_path)  # the JSON file is given relative, as a user types it
    write_schema(tmp_path / "receipt.json", RECEIPT)
    reference = "receipt.json" if kind == "json" else f"{module}:Ticket"
    stored = "receipt" if kind == "json" else reference
    monkeypatch.setenv("DOCEXTRACT_DB_URL", sqlite_url)
    monkeypatch.setenv("DOCEXTRACT_CACHE_DIR", str(tmp_path / "cache"))
    settings = Settings(schemas=[reference], model={"backend": "scripted"}, workers=1)
    model = ScriptedModel(lambda r, n: empty_record_json(r.json_schema), "scripted-empty")
    path = tmp_path / "scan.png"
    Image.new("RGB", (300, 400), "white").save(path)
    factory = session_factory(open_database(sqlite_url))
    (outcome,) = process(factory, register(factory, path, settings), settings, model=model)
    assert outcome.schema == stored

    forget_custom_schemas()  # as in a new process
    monkeypatch.chdir("/")  # ... started elsewhere
    statuses = ["succeeded", "needs_review"]
    for given in {stored, str(tmp_path / "receipt.json") if kind == "json" else reference}:
        assert selection_from(statuses, None, None, None, None, given, None).schema == stored
    selection = selection_from(statuses, None, None, None, None, stored, None)
    rerun_settings = Settings(model={"backend": "scripted"})
    with factory() as session:
        plan = plan_rerun(session, selection, rerun_settings)
    assert len(plan.units) == 1 and not plan.skipped, plan.to_json()
    with factory.begin() as session:
        run_id = repo.start_run(session, "rerun", {}).id
    units = [u.to_json() for u in plan.units]
    scripted = {"model": {"backend": "scripted"}}
    (again,) = rerun_document.fn(plan.units[0].document_id, units, scripted, run_id)
    assert again["did_work"] and again["schema"] == stored
    with factory() as session:
        (extraction,) = session.scalars(select(Extraction)).all()
        assert extraction.schema_name == stored and extraction.attempts == 2
