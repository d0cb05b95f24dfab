"""The evaluation harness: metrics computed by hand on small records, the ground-truth format,
the harness fed with scripted outputs of known quality through the runner, and `docextract eval`
through the CLI and Prefect."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from pipeline.backends.scripted import ScriptedModel
from pipeline.errors import ConfigError
from pipeline.evaluation import (
    Case,
    anls,
    evaluate,
    greedy_match,
    load_ground_truth,
    normalize,
    score_record,
)
from pipeline.runner import process, register
from pipeline.settings import Settings
from pipeline.store.db import open_database, session_factory
from pipeline.store.models import Document, Extraction
from pipeline.types import VisionRequest
from schemas import get_schema
from schemas.base import ExtractionSchema
from schemas.invoice import Invoice
from schemas.table import Table

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_docs"

INVOICE: dict[str, Any] = Invoice.model_validate(
    {
        "invoice_number": "INV-7",
        "issue_date": "2025-03-01",
        "currency": "EUR",
        "seller": {"name": "Acme Tools GmbH"},
        "line_items": [
            {"description": "Hammer", "quantity": "2", "unit_price": "10.00", "amount": "20.00"},
            {"description": "Saw", "quantity": "1", "unit_price": "30.00", "amount": "30.00"},
            {"description": "Drill", "quantity": "1", "unit_price": "50.00", "amount": "50.00"},
            {"description": "Nails", "quantity": "4", "unit_price": "2.50", "amount": "10.00"},
        ],
        "subtotal": "110.00",
        "total": "110.00",
    }
).model_dump(mode="json")


def changed(record: dict[str, Any], edit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    copied = copy.deepcopy(record)
    edit(copied)
    return copied


# --- metrics by hand ------------------------------------------------------------------------------


def test_a_perfect_record_scores_one_everywhere() -> None:
    (report,) = evaluate([Case("a.pdf", Invoice, INVOICE, INVOICE, "succeeded")]).values()
    summary = report.summary()
    assert (summary["exact"], summary["f1"], summary["needs_review_share"]) == (1.0, 1.0, 0.0)
    assert report.fields["line_items"].to_json()["f1"] == 1.0
    assert "due_date" not in report.fields  # null in truth and prediction: no evidence


def degrade(record: dict[str, Any]) -> None:
    """Known damage: one line dropped, one amount misread, the seller's name shortened,
    the line order shuffled, a currency added, the total in another spelling."""
    items = record["line_items"]
    items.pop(3)  # Nails missing
    items[0]["amount"] = "21.00"  # Hammer misread
    items.reverse()
    record["seller"]["name"] = "Acme Tools"
    record["total"] = "110.0"  # same number, other spelling: still exact
    record["purchase_order"] = "PO-1"  # not in the truth: a false value


def test_a_degraded_record_scores_what_was_damaged() -> None:
    scores = score_record(Invoice, INVOICE, changed(INVOICE, degrade))
    items = scores["line_items"]
    # 3 predicted items matched to truth despite the order; Hammer differs in its amount
    assert (items.expected, items.predicted, items.matched) == (4, 3, 2)
    assert (items.precision, items.recall, items.f1) == (2 / 3, 2 / 4, 4 / 7)
    assert scores["line_items[].amount"].exact == 2 / 4  # Nails missing, Hammer wrong
    assert scores["line_items[].description"].exact == 3 / 4
    assert scores["total"].exact == 1.0
    assert scores["purchase_order"].exact == 0.0 and scores["purchase_order"].count == 1
    seller = scores["seller.name"]
    assert seller.exact == 0.0 and seller.anls == pytest.approx(1 - 5 / 15)  # ' gmbh' dropped
    assert scores["invoice_number"].kind == "text" and scores["issue_date"].kind == "value"


def test_statuses_and_failures_count_per_schema() -> None:
    reports = evaluate(
        [
            Case("a.pdf", Invoice, INVOICE, INVOICE, "succeeded"),
            Case("b.pdf", Invoice, INVOICE, changed(INVOICE, degrade), "needs_review"),
            Case("c.pdf", Invoice, INVOICE, None, "failed"),
        ]
    )
    report = reports["invoice"]
    summary = report.summary()
    assert summary["documents"] == 3
    assert summary["status"] == {"failed": 1, "needs_review": 1, "succeeded": 1}
    assert (summary["needs_review_share"], summary["failed_share"]) == (0.3333, 0.3333)
    assert report.fields["invoice_number"].exact == 2 / 3  # the failed one has no record
    assert [d["document"] for d in report.documents] == ["a.pdf", "b.pdf", "c.pdf"]
    assert report.documents[0]["exact"] == 1.0 and report.documents[2]["exact"] == 0.0
    assert json.loads(json.dumps(report.to_json()))["fields"]["line_items"]["expected"] == 12


def test_table_cells_are_scored_after_matching_rows() -> None:
    truth = Table(
        columns=["Item", "Qty", "Price"],
        rows=[["Bolt", "10", "1.50"], ["Nut", "20", "0.20"], ["Washer", None, "0.05"]],
    ).model_dump(mode="json")
    predicted = Table(
        columns=["Item", "Qty", "Price"],
        rows=[["Nut", "20", "0,20"], ["Bolt", "10", "1.60"], ["Screw", "5", "0.30"]],
    ).model_dump(mode="json")
    scores = score_record(Table, truth, predicted)
    cells = scores["rows"]
    # 8 non-empty cells each; matched: Nut row 3 (0,20 = 0.20), Bolt row 2; Screw row none
    assert (cells.expected, cells.predicted, cells.matched) == (8, 9, 5)
    assert scores["rows (whole rows)"].matched == 1
    assert scores["columns"].f1 == 1.0


def test_normalization_and_anls() -> None:
    assert normalize("1.234,50") == normalize("1234.5") == normalize("€ 1,234.50")
    assert normalize("  ACME   Tools. ") == normalize("acme tools")
    assert normalize("2025-03-01") == "2025-03-01"
    assert normalize(12.5) == normalize("12.50")
    assert anls("abcd", "abce") == 0.75
    assert anls("abcd", "wxyz") == 0.0  # below the 0.5 threshold
    assert anls(None, None) == 1.0 and anls("a", None) == 0.0


def test_greedy_matching_ignores_order_and_uses_each_item_once() -> None:
    pairs = greedy_match(["a", "b", "c"], ["c", "a", "a"], lambda t, p: float(t == p))
    assert pairs == [(0, 1), (2, 0)]


# --- ground truth ---------------------------------------------------------------------------------


def test_sample_docs_ground_truth_loads_with_its_schemas() -> None:
    truths = load_ground_truth(SAMPLES)
    assert len(truths) == 13
    by_name = {t.document.name: sorted(t.records) for t in truths}
    assert by_name["invoice-two-page.pdf"] == ["invoice", "table"]
    assert by_name["form-expense-claim.pdf"] == ["form"]
    assert by_name["chart-revenue-bar.png"] == ["chart"]


def test_ground_truth_problems_are_configuration_errors(tmp_path: Path) -> None:
    shutil.copy(SAMPLES / "chart-revenue-bar.png", tmp_path / "c.png")
    (tmp_path / "schema.json").write_text('{"type": "object"}')  # not ground truth: ignored
    (tmp_path / "c.json").write_text(json.dumps({"records": {"chart": {"series": "x"}}}))
    with pytest.raises(ConfigError, match=r"'chart' record is not a valid 'chart'"):
        load_ground_truth(tmp_path)
    (tmp_path / "c.json").write_text(json.dumps({"document": "d.pdf", "records": {}}))
    with pytest.raises(ConfigError, match="which does not exist"):
        load_ground_truth(tmp_path)
    (tmp_path / "c.json").write_text(json.dumps({"records": {"chart": {}}}))
    (truth,) = load_ground_truth(tmp_path)
    assert truth.document == tmp_path / "c.png" and truth.records["chart"]["series"] == []


# --- the harness fed with scripted outputs of known quality, through the runner ------------------


def oracle(answers: dict[str, dict[str, Any]]) -> ScriptedModel:
    """Answers each request with the record for its schema (recognized by its grammar)."""
    grammars = {json.dumps(get_schema(n).grammar_schema(), sort_keys=True): n for n in answers}

    def script(request: VisionRequest, number: int) -> str:
        return json.dumps(answers[grammars[json.dumps(request.json_schema, sort_keys=True)]])

    return ScriptedModel(script, model_id="scripted-oracle")


def harness(
    settings: Settings, documents: list[str], damage: Callable[[str, dict[str, Any]], None]
) -> dict[str, Any]:
    """Run each sample document through `runner.process` with an oracle answering its truth
    after `damage(schema, record)`, read the stored records back, and evaluate them."""
    # One request per page: the oracle answers a whole page, so tiles would each repeat it.
    settings.tiling.strategy = "anyres"
    factory = session_factory(open_database(settings.db_url.get_secret_value()))
    truths = {t.document.name: t for t in load_ground_truth(SAMPLES)}
    cases = []
    for name in documents:
        truth = truths[name]
        answers = {s: changed(r, lambda rec, s=s: damage(s, rec)) for s, r in truth.records.items()}
        settings.schemas = list(truth.records)
        registered = register(factory, truth.document, settings)
        for outcome in process(factory, registered, settings, model=oracle(answers)):
            schema: type[ExtractionSchema] = get_schema(outcome.schema)
            with factory() as session:
                stored = session.scalars(
                    select(Extraction)
                    .join(Document)
                    .where(Document.sha256 == outcome.sha256)
                    .where(Extraction.schema_name == schema.schema_name)
                ).one()
                cases.append(
                    Case(name, schema, truth.records[outcome.schema], stored.record, stored.status)
                )
    return {name: report for name, report in evaluate(cases).items()}


DOCUMENTS = ["invoice-born-digital.pdf", "form-supplier-registration.pdf", "chart-revenue-bar.png"]


def test_scripted_perfect_outputs_score_perfectly(settings: Settings) -> None:
    reports = harness(settings, DOCUMENTS, lambda schema, record: None)
    assert set(reports) == {"invoice", "table", "form", "chart"}
    for name, report in reports.items():
        summary = report.summary()
        assert (summary["f1"], summary["needs_review_share"]) == (1.0, 0.0)
        # an invoice's line-item table has no title or notes: no scalar field to score
        assert summary["exact"] == (None if name == "table" else 1.0)


def damage_known(schema: str, record: dict[str, Any]) -> None:
    if schema == "invoice":
        record["total"] = "9999.00"  # breaks subtotal + tax = total: needs review
        record["line_items"].pop()
    elif schema == "form":
        record["fields"][6]["checked"] = False  # ISO 9001 read as not ticked
    elif schema == "chart":
        record["series"][0]["points"][3]["value"] = "81.2"  # Q4 18.2 misread


def test_scripted_degraded_outputs_score_as_expected(settings: Settings) -> None:
    reports = harness(settings, DOCUMENTS, damage_known)
    invoice = reports["invoice"]
    assert invoice.summary()["status"] == {"needs_review": 1}
    assert invoice.fields["total"].exact == 0.0 and invoice.fields["subtotal"].exact == 1.0
    items = invoice.fields["line_items"]
    assert (items.expected, items.predicted, items.matched, items.recall) == (5, 4, 4, 0.8)
    form = reports["form"]
    assert form.summary()["status"] == {"succeeded": 1}
    fields = form.fields["fields"]
    assert (fields.expected, fields.matched) == (12, 11)
    # `checked` is scored where truth or prediction has it: 3 checkboxes and a signature
    assert form.fields["fields[].checked"].exact == 3 / 4
    chart = reports["chart"]
    points = chart.fields["series[].points"]
    assert (points.expected, points.predicted, points.matched) == (4, 4, 3)
    assert chart.fields["series[].points[].value"].exact == 3 / 4
    assert reports["table"].summary()["f1"] == 1.0  # the table itself was not damaged


# --- docextract eval through the CLI and Prefect --------------------------------------------------


@pytest.mark.slow
def test_eval_command_runs_the_flow_and_reports_json(
    prefect_api_url: str, shared_cache_dir: Path, tmp_path: Path
) -> None:
    for name in ("invoice-born-digital", "chart-revenue-bar"):
        for path in SAMPLES.glob(f"{name}.*"):
            shutil.copy(path, tmp_path / path.name)
    env = dict(os.environ, PREFECT_API_URL=prefect_api_url)
    env.update(DOCEXTRACT_CACHE_DIR=str(shared_cache_dir), HF_HUB_OFFLINE="1")
    env.pop("DOCEXTRACT_DB_URL", None)
    command = [sys.executable, "-m", "pipeline", "eval", str(tmp_path), "--backend", "scripted"]
    result = subprocess.run(
        [*command, "--json"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["model"] == "scripted-empty" and report["documents"] == 2
    assert set(report["schemas"]) == {"invoice", "table", "chart"}
    invoice = report["schemas"]["invoice"]
    # the scripted backend answers empty records: every field missed, every document in review
    assert invoice["status"] == {"needs_review": 1} and invoice["needs_review_share"] == 1.0
    assert invoice["exact"] == 0.0 and invoice["fields"]["line_items"]["recall"] == 0.0
    assert report["schemas"]["chart"]["fields"]["series"]["expected"] == 1
    assert not (tmp_path / "docextract.db").exists()  # a temporary database, not the folder

    table = subprocess.run(
        [*command, "--schema", "chart"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert table.returncode == 0, table.stderr[-3000:]
    assert "chart v1.0 with scripted-empty: 1 documents" in table.stdout
    assert "series[].points[].value" in table.stdout
    missing = subprocess.run(
        [*command[:4], str(tmp_path / "nothing")], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert missing.returncode == 2 and "not a folder" in " ".join(missing.stderr.split())
