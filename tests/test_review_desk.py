"""The review desk without a browser, on SQLite and PostgreSQL: the 0003 migration and its
backfill, the queue (filters, counts, risk order, pages), decisions with the optimistic version
check, reruns that respect reviewers, the app's guards (token, CSRF, escaping, page images by id),
the night's report, `eval --reviewed` and `export --format truth`."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from _review_seed import XSS_IMG, XSS_SCRIPT, evidence, invoice_record, seed_invoice
from alembic import command
from sqlalchemy import inspect, select, text
from starlette.testclient import TestClient
from typer.testing import CliRunner

from flows.rerun import rerun_document
from pipeline.cli import app as cli_app
from pipeline.evaluation import load_ground_truth
from pipeline.prompts import PROMPT_VERSION
from pipeline.review.app import create_app
from pipeline.review.editing import check_record, record_diff
from pipeline.review.report import build_report, render_report
from pipeline.settings import Settings
from pipeline.store import repository as repo
from pipeline.store import reviews as store
from pipeline.store.db import alembic_config, make_engine, open_database, session_factory
from pipeline.store.models import Extraction, ExtractionEvent, Review
from pipeline.types import Status

cli = CliRunner()


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(db_url=db_url, cache_dir=tmp_path / "cache")


@pytest.fixture
def factory(settings: Settings) -> Any:
    return session_factory(open_database(settings.db_url.get_secret_value()))


def approve(factory: Any, extraction_id: int, version: int, record: dict[str, Any]) -> Review:
    with factory.begin() as session:
        original = session.get(Extraction, extraction_id).record
        checked = check_record("invoice", record, original)
        assert checked.valid, checked.errors
        action = "corrected" if checked.diff else "approved"
        decision = store.Decision(action, "ann", checked.record, checked.diff, checked.reasons)
        return store.decide(session, extraction_id, version, decision)


def version_of(factory: Any, extraction_id: int) -> int:
    with factory() as session:
        return session.get(Extraction, extraction_id).version


def test_migration_0003_backfills_risk_and_goes_down_and_up(db_url: str) -> None:
    engine = make_engine(db_url)
    config = alembic_config(engine)
    command.upgrade(config, "0002")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO documents (id, sha256, size_bytes, first_seen_at, last_seen_at) "
                "VALUES (1, :sha, 1, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            ),
            {"sha": "cd" * 32},
        )
        connection.execute(
            text(
                "INSERT INTO extractions (id, document_id, schema_name, schema_version, model_id, "
                "prompt_version, status, review_reasons, errors, raw_outputs, provenance, timings, "
                "field_confidence, pages_total, pages_failed, image_tokens, input_tokens, "
                "output_tokens, model_calls, attempts, seconds, created_at, updated_at) VALUES "
                "(1, 1, 'invoice', '1.1', 'm', '1', 'needs_review', :reasons, '[]', '[]', '{}', "
                "'{}', :conf, 1, 0, 0, 0, 0, 0, 1, 0, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            ),
            {
                "reasons": json.dumps(["a", "b"]),
                "conf": json.dumps({"total": {"confidence": 0.4}, "seller.name": 0.9}),
            },
        )
    command.upgrade(config, "head")
    with session_factory(engine)() as session:
        row = session.get(Extraction, 1)
        assert (row.version, row.reason_count, row.min_confidence) == (1, 2, 0.4)
    command.downgrade(config, "0002")
    assert "reviews" not in inspect(engine).get_table_names()
    command.upgrade(config, "head")


def test_queue_filters_counts_risk_order_and_pages(
    factory: Any, settings: Settings, tmp_path: Path
) -> None:
    with factory.begin() as session:
        run_id = repo.start_run(session, "run", {}).id
    low = evidence({"total": 0.31})
    docs = [
        seed_invoice(factory, settings, tmp_path, n, run_id=run_id if n < 3 else None)
        for n in range(1, 5)
    ]
    risky = seed_invoice(factory, settings, tmp_path, 9, field_confidence=low)
    seed_invoice(factory, settings, tmp_path, 10, status="succeeded", reasons=[])
    seed_invoice(factory, settings, tmp_path, 11, status="failed", category="model_error")
    with factory() as session:
        page = store.queue_page(session, store.QueueFilter(per_page=2))
        assert page.total == 6 and page.pages == 3 and len(page.rows) == 2
        assert page.rows[0].name == "invoice-11.png"  # newest first
        by_risk = store.queue_page(session, store.QueueFilter(sort="risk"))
        assert by_risk.rows[0].extraction_id == risky.extraction_id
        assert dict(page.facets["status"]) == {"needs_review": 5, "failed": 1}
        assert dict(page.facets["run"]) == {run_id: 2}
        assert dict(page.facets["error_category"]) == {"model_error": 1}
        key = "subtotal # + tax # != total # (tolerance #)"
        assert (key, 6) in page.facets["reason"]
        assert store.queue_page(session, store.QueueFilter(reason=key)).total == 6
        assert store.queue_page(session, store.QueueFilter(reason="due date #")).total == 0
        assert store.reason_pattern("50%_a") == "%50\\%\\_a%"
        only_run = store.queue_page(session, store.QueueFilter(run=run_id))
        assert {r.extraction_id for r in only_run.rows} == {d.extraction_id for d in docs[:2]}
        by_reason = store.queue_page(session, store.QueueFilter(reason="!= TOTAL"))
        assert by_reason.total == 6
        failed = store.queue_page(session, store.QueueFilter(error_category="model_error"))
        assert [r.status for r in failed.rows] == ["failed"]


def test_decisions_are_stored_and_a_stale_save_is_refused(
    factory: Any, settings: Settings, tmp_path: Path
) -> None:
    doc = seed_invoice(factory, settings, tmp_path, 1)
    version = version_of(factory, doc.extraction_id)
    # Two clerks opened the same version; the first saves a correction.
    review = approve(factory, doc.extraction_id, version, invoice_record(1, total="29.75"))
    assert review.action == "corrected" and review.diff == [
        {"path": "total", "before": "92.75", "after": "29.75"}
    ]
    with pytest.raises(store.StaleVersion, match="changed since you opened it"):
        approve(factory, doc.extraction_id, version, invoice_record(1, total="30.00"))
    with factory() as session:
        row = session.get(Extraction, doc.extraction_id)
        assert (row.status, row.record["total"], row.review_reasons) == ("corrected", "29.75", [])
        assert row.version == version + 1
        stored = session.scalars(select(Review)).one()  # the stale save wrote nothing
        assert (stored.original_record["total"], stored.corrected_record["total"]) == (
            "92.75",
            "29.75",
        )
        assert (stored.model_id, stored.prompt_version, stored.reviewer) == (
            "scripted-empty",
            PROMPT_VERSION,
            "ann",
        )
        events = session.scalars(
            select(ExtractionEvent.status).where(ExtractionEvent.extraction_id == row.id)
        ).all()
        assert events == ["running", "needs_review", "corrected"]
        assert store.queue_page(session, store.QueueFilter()).total == 0


def test_a_rerun_keeps_a_reviewed_record_unless_forced(
    factory: Any, settings: Settings, tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCEXTRACT_DB_URL", db_url)
    doc = seed_invoice(factory, settings, tmp_path, 1)
    approve(
        factory,
        doc.extraction_id,
        version_of(factory, doc.extraction_id),
        invoice_record(1, total="29.75"),
    )
    overrides = {
        "cache_dir": str(settings.cache_dir),
        "model": {"backend": "scripted"},
        "tiling": {"strategy": "anyres"},
    }
    unit = {
        "extraction_id": doc.extraction_id,
        "name": doc.path.name,
        "sha256": doc.sha256,
        "schema_name": "invoice",
        "status": "corrected",
    }
    with factory.begin() as session:
        run_id = repo.start_run(session, "rerun", {}).id
    rows = rerun_document.fn(doc.document_id, [unit], overrides, run_id)
    assert [r["did_work"] for r in rows] == [True]
    with factory() as session:
        row = session.get(Extraction, doc.extraction_id)
        assert (row.status, row.record["total"]) == ("corrected", "29.75")  # the person stands
        last = session.scalars(
            select(ExtractionEvent)
            .where(ExtractionEvent.extraction_id == row.id)
            .order_by(ExtractionEvent.id.desc())
            .limit(2)
        ).all()
        assert last[0].status == "corrected" and "rerun --force" in last[0].error_message
        assert last[1].status == "needs_review" and last[1].record is not None  # kept attempt
        assert len(store.attempts(session, row.id)) == 4
    rerun_document.fn(doc.document_id, [unit], overrides, run_id, force=True)
    with factory() as session:
        row = session.get(Extraction, doc.extraction_id)
        assert row.status == "needs_review" and row.record["total"] is None  # scripted empty


def test_the_app_escapes_guards_csrf_and_serves_pages_by_id(
    factory: Any, settings: Settings, tmp_path: Path
) -> None:
    evil = XSS_SCRIPT + XSS_IMG
    doc = seed_invoice(factory, settings, tmp_path, 1, record=invoice_record(1, seller=evil))
    client = TestClient(create_app(settings, factory))
    page = client.get(f"/doc/{doc.extraction_id}")
    assert page.status_code == 200
    assert "<script>alert" not in page.text and "<img src=x" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    image = client.get(f"/doc/{doc.extraction_id}/pages/1")
    assert image.status_code == 200 and image.content[:4] == b"\x89PNG"
    assert client.get(f"/doc/{doc.extraction_id}/pages/2").status_code == 404
    assert client.get("/doc/1/pages/..%2F..%2Fetc%2Fpasswd").status_code == 404
    body = {"action": "approve", "record": invoice_record(1), "version": 3, "reviewer": "ann"}
    assert client.post(f"/doc/{doc.extraction_id}/decide", json=body).status_code == 403
    csrf = client.cookies["docextract_csrf"]
    cross = client.post(
        f"/doc/{doc.extraction_id}/decide",
        json=body,
        headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"},
    )
    assert cross.status_code == 403
    # The no-script form post: approve the record as it is.
    form = client.post(
        f"/doc/{doc.extraction_id}/decide",
        data={
            "csrf": csrf,
            "action": "approve",
            "version": str(version_of(factory, doc.extraction_id)),
            "reviewer": "bob",
            "record": json.dumps(invoice_record(1, seller=evil)),
        },
        follow_redirects=False,
    )
    assert form.status_code == 303, form.text
    with factory() as session:
        row = session.get(Extraction, doc.extraction_id)
        assert row.status == "approved" and row.record["seller"]["name"] == evil


def test_the_token_guards_everything_and_never_shows_in_the_url(
    factory: Any, settings: Settings
) -> None:
    guarded = Settings(
        db_url=settings.db_url, cache_dir=settings.cache_dir, review={"token": "s3cret-token"}
    )
    client = TestClient(create_app(guarded, factory))
    assert client.get("/").status_code == 401
    assert client.get("/?token=wrong").status_code == 403
    login = client.get("/?token=s3cret-token&sort=risk", follow_redirects=False)
    assert login.status_code == 303 and login.headers["location"] == "/?sort=risk"
    assert client.get("/").status_code == 200  # the cookie now
    bearer = TestClient(create_app(guarded, factory))
    assert bearer.get("/", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
    refused = cli.invoke(
        cli_app, ["review", "--host", "0.0.0.0", "--db", settings.db_url.get_secret_value()]
    )
    assert refused.exit_code != 0 and "DOCEXTRACT_REVIEW__TOKEN" in refused.output


def test_the_report_is_self_contained_and_status_points_to_it(
    factory: Any, settings: Settings, tmp_path: Path
) -> None:
    with factory.begin() as session:
        run_id = repo.start_run(session, "run", {}).id
    seed_invoice(factory, settings, tmp_path, 1, run_id=run_id)
    seed_invoice(
        factory, settings, tmp_path, 2, run_id=run_id, status="failed", category="render_timeout"
    )
    with factory.begin() as session:
        repo.finish_run(session, run_id, {})
    url = settings.db_url.get_secret_value()
    out = tmp_path / "report.html"
    result = cli.invoke(cli_app, ["report", "--run", str(run_id), "--out", str(out), "--db", url])
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert "<script" not in html and not re.search(r"(src|href)=\"https?://(?!127\.0\.0\.1)", html)
    assert "<svg" in html and "render_timeout" in html
    assert "docextract rerun --doc " in html and f"/?run={run_id}" in html
    assert "subtotal # + tax # != total #" in html
    status = cli.invoke(cli_app, ["status", "--db", url])
    assert "docextract review" in status.output and "docextract report" in status.output
    client = TestClient(create_app(settings, factory))
    served = client.get(f"/runs/{run_id}")
    assert served.status_code == 200 and "Pages per hour" in served.text
    with factory() as session:
        data = build_report(session, run_id=run_id, desk_url="")
    assert data.waiting == 2 and render_report(data)


def test_reviewed_records_teach_eval_and_export_truth(
    factory: Any, settings: Settings, tmp_path: Path
) -> None:
    a = seed_invoice(factory, settings, tmp_path / "in", 1)
    b = seed_invoice(factory, settings, tmp_path / "in", 2)
    approve(
        factory,
        a.extraction_id,
        version_of(factory, a.extraction_id),
        invoice_record(1, total="29.75"),
    )
    approve(factory, b.extraction_id, version_of(factory, b.extraction_id), invoice_record(2))
    url = settings.db_url.get_secret_value()
    scored = cli.invoke(cli_app, ["eval", "--reviewed", "--db", url, "--json"])
    assert scored.exit_code == 0, scored.output
    data = json.loads(scored.output)
    fields = data["schemas"]["invoice"]["fields"]
    assert fields["total"]["exact"] == 0.5 and fields["invoice_number"]["exact"] == 1.0
    assert data["calibration"][-1]["values"] > 0
    out = tmp_path / "truth"
    exported = cli.invoke(cli_app, ["export", "--format", "truth", "--out", str(out), "--db", url])
    assert exported.exit_code == 0, exported.output
    truths = load_ground_truth(out)
    assert sorted(t.document.name for t in truths) == ["invoice-1.png", "invoice-2.png"]
    assert truths[0].records["invoice"]["total"] == "29.75"


def test_record_diff_and_check_name_paths_as_evidence_keys() -> None:
    before = invoice_record(1)
    after = json.loads(json.dumps(before))
    after["line_items"].append(
        {"description": "Saw", "quantity": None, "unit_price": None, "amount": "3"}
    )
    after["seller"]["name"] = "ACME"
    paths = [d["path"] for d in record_diff(before, after)]
    assert paths == ["seller.name", "line_items[2].description", "line_items[2].amount"]
    bad = check_record("invoice", {**before, "total": "lots"}, before)
    assert not bad.valid and bad.errors[0]["path"] == "total"
    assert Status("corrected").is_reviewed and not Status("succeeded").is_reviewed


def test_min_confidence_reads_both_formats() -> None:
    assert store.min_confidence({"a": {"confidence": 0.5}, "b": 0.3, "c": {"page": None}}) == 0.3
    assert store.min_confidence(None) is None
