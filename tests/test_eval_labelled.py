"""Partly labelled truth (issue 18) and confidence calibration in `docextract eval` (issue 14)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, NoReturn

import pytest
from conftest import SHARED
from sqlalchemy import select

from pipeline.backends import forget_loaded_models
from pipeline.calibration import add_calibration, field_outcomes
from pipeline.evaluation import Case, covers, evaluate, load_ground_truth, score_record
from pipeline.runner import process, register
from pipeline.settings import Settings
from pipeline.store.db import open_database, session_factory
from pipeline.store.models import Extraction
from schemas.invoice import Invoice

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_docs"
CORPUS = SHARED / "corpus" / "invoices-real"

RECEIPT = Invoice.model_validate(
    {"seller": {"name": "UNIHAKKA INTERNATIONAL SDN BHD"}, "issue_date": "2018-03-05",
     "total": "8.20", "invoice_number": None}
).model_dump(mode="json")  # fmt: skip


def test_only_labelled_paths_are_scored() -> None:
    predicted = dict(RECEIPT, invoice_number="CS0001", line_items=[{"description": "Tea"}])
    labelled = ("issue_date", "seller.name", "total", "currency")
    scores = score_record(Invoice, RECEIPT, predicted, labelled)
    # the unlabelled invoice number and line items are neither right nor wrong
    assert set(scores) == {"issue_date", "seller.name", "total"}
    assert all(s.exact == 1.0 for s in scores.values())
    # a labelled path whose truth is null means absent: predicting a value is a miss
    wrong = score_record(Invoice, RECEIPT, dict(predicted, currency="MYR"), labelled)
    assert wrong["currency"].exact == 0.0
    everything = score_record(Invoice, RECEIPT, predicted)
    assert everything["invoice_number"].exact == 0.0 and everything["line_items"].precision == 0


def test_covers_list_paths_and_their_items() -> None:
    assert covers(["line_items"], "line_items[3].amount")
    assert covers(["line_items"], "line_items[].amount")
    assert covers(["seller"], "seller.name") and covers(None, "anything")
    assert not covers(["seller.name"], "seller.address")
    assert not covers(["total"], "total_due") and not covers([], "total")


def test_the_corpus_truth_declares_what_it_labelled() -> None:
    if not CORPUS.is_dir():
        _corpus_missing()
    truths = load_ground_truth(CORPUS)
    assert len(truths) >= 10
    for truth in truths:
        assert truth.labelled_paths(Invoice)  # every file says what it labelled


def test_calibration_separates_right_from_wrong_fields() -> None:
    evidence = {
        "issue_date": {"confidence": 0.95},
        "seller.name": {"confidence": 0.9},
        "total": {"confidence": 0.1},
        "invoice_number": {"confidence": 0.99},  # not labelled: not an outcome
    }
    predicted = dict(RECEIPT, total="8.30", invoice_number="X1")
    case = Case(
        "r.jpg", Invoice, RECEIPT, predicted, "needs_review",
        ("issue_date", "seller.name", "total"), evidence,
    )  # fmt: skip
    assert sorted(field_outcomes(case)) == [(0.1, False), (0.9, True), (0.95, True)]
    reports = evaluate([case])
    add_calibration(reports, [case])
    figures = reports["invoice"].calibration
    assert figures is not None
    assert (figures["fields"], figures["auroc"], figures["accuracy"]) == (3, 1.0, 0.6667)
    assert figures["coverage_at_99_precision"] == 0.6667
    assert sum(row["count"] for row in figures["reliability"]) == 3
    assert reports["invoice"].to_json()["calibration"] == figures


def test_perturbed_truth_is_caught_by_confidence(tmp_path: Path, settings: Settings) -> None:
    """Through the pipeline: one wrong value per invoice (digit), the confidence that vouch
    stores ranks every wrong value below every right one."""
    folder = tmp_path / "in"
    folder.mkdir()
    names = ("invoice-born-digital", "invoice-two-page", "invoice-fr-discount")
    for name in names:
        for path in SAMPLES.glob(f"{name}.*"):
            shutil.copy(path, folder / path.name)
    forget_loaded_models()
    settings = settings.model_copy(
        update={
            "model": settings.model.model_copy(
                update={"backend": "scripted-truth", "perturb": "digit"}
            )
        }
    )
    factory = session_factory(open_database(settings.db_url.get_secret_value()))
    cases = []
    for truth in load_ground_truth(folder):
        process(factory, register(factory, truth.document, settings), settings)
        with factory() as session:
            stored = session.scalars(select(Extraction).order_by(Extraction.id.desc())).first()
            assert stored is not None
            cases.append(
                Case(truth.document.name, Invoice, truth.records["invoice"], stored.record,
                     stored.status, None, stored.field_confidence)
            )  # fmt: skip
    reports = evaluate(cases)
    add_calibration(reports, cases)
    figures = reports["invoice"].calibration
    assert figures is not None
    assert figures["auroc"] == 1.0 and figures["accuracy"] < 1.0
    assert figures["coverage_at_99_precision"] > 0.9


def _corpus_missing() -> NoReturn:
    reason = f"invoices-real corpus not found at {CORPUS} (needs ../shared next to the repo)"
    if os.environ.get("DOCEXTRACT_TEST_SKIP_CORPUS") == "1":
        pytest.skip(reason)
    pytest.fail(f"{reason}; set DOCEXTRACT_TEST_SKIP_CORPUS=1 to skip these tests explicitly")


@pytest.mark.slow
def test_scripted_truth_scores_every_labelled_field_of_the_corpus(
    prefect_api_url: str, shared_cache_dir: Path
) -> None:
    if not CORPUS.is_dir():
        _corpus_missing()
    env = dict(os.environ, PREFECT_API_URL=prefect_api_url)
    env.update(DOCEXTRACT_CACHE_DIR=str(shared_cache_dir), HF_HUB_OFFLINE="1")
    env.pop("DOCEXTRACT_DB_URL", None)
    command = [sys.executable, "-m", "pipeline", "eval", str(CORPUS), "--backend", "scripted-truth"]
    result = subprocess.run(
        [*command, "--json"], cwd=REPO, env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report: dict[str, Any] = json.loads(result.stdout)
    assert report["model"] == "scripted-truth" and report["documents"] == len(
        load_ground_truth(CORPUS)
    )
    invoice = report["schemas"]["invoice"]
    assert invoice["fields"], "nothing was scored"
    for name, score in invoice["fields"].items():
        assert score.get("exact", 1.0) == 1.0 and score.get("f1") in (None, 1.0), name
    labelled = {p for t in load_ground_truth(CORPUS) for p in t.labelled_paths(Invoice) or ()}
    assert set(invoice["fields"]) <= {p for p in labelled} | {"line_items"}
    assert invoice["calibration"]["fields"] >= 50
