"""Reruns on SQLite and PostgreSQL: selection by each filter, replacing results in place, history,
idempotence, moved or missing files; and once through the CLI and the Prefect flow."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from _seed import MODEL_ID, make_png, ops_settings, seed
from sqlalchemy import func, select

from flows.rerun import rerun_document
from pipeline.errors import ConfigError, ModelError
from pipeline.prompts import PROMPT_VERSION
from pipeline.reruns import locate, plan_rerun, selection_from
from pipeline.runner import Registered, process, register
from pipeline.store import repository as repo
from pipeline.store.db import open_database, session_factory
from pipeline.store.models import Document, Extraction, ExtractionEvent, Run
from pipeline.types import Status

REPO = Path(__file__).resolve().parent.parent
DAYS_AGO = datetime.now(UTC) - timedelta(days=3)


@pytest.fixture
def factory(db_url: str) -> Any:
    return session_factory(open_database(db_url))


@pytest.fixture
def seeded(factory: Any, tmp_path: Path) -> dict[str, Any]:
    """One extraction per interesting state (each its own document)."""
    inbox = tmp_path / "inbox"
    return {
        s.name: s
        for s in [
            seed(factory, inbox, "f-model.png", "failed", category="model_error"),
            seed(factory, inbox, "f-render.png", "failed", category="render_timeout"),
            seed(
                factory,
                inbox,
                "old-fail.png",
                "failed",
                category="model_error",
                updated_at=DAYS_AGO,
            ),
            seed(factory, inbox, "review.png", "needs_review", record={"total": None}),
            seed(factory, inbox, "partial.png", "partial", category="corrupt", record={}),
            seed(factory, inbox, "ok.png", "succeeded", record={"total": "1.00"}),
            seed(
                factory,
                inbox,
                "other-model.png",
                "failed",
                category="model_error",
                model_id="llava-hf/x",
            ),
            seed(
                factory, inbox, "form.png", "failed", category="model_error", schema="unregistered"
            ),
        ]
    }


def selected(factory: Any, settings: Any, **filters: Any) -> tuple[list[str], list[str]]:
    """Names of the units a rerun with `filters` would redo, and of those it would skip."""
    args = {
        k: filters.get(k)
        for k in ("statuses", "error_categories", "documents", "since", "until", "schema", "model")
    }
    with factory() as session:
        plan = plan_rerun(session, selection_from(**args), settings)
    return sorted(u.name for u in plan.units), sorted(u.name for u, _ in plan.skipped)


CASES = {
    "default is failed": ({}, ["f-model.png", "f-render.png", "old-fail.png"]),
    "status": ({"statuses": ["needs_review", "partial"]}, ["partial.png", "review.png"]),
    "error category": ({"error_categories": ["render_timeout"]}, ["f-render.png"]),
    "category across statuses": (
        {"statuses": ["failed", "partial"], "error_categories": ["corrupt"]},
        ["partial.png"],
    ),
    "document by name": ({"documents": ["f-render.png"]}, ["f-render.png"]),
    "since": ({"since": "1d"}, ["f-model.png", "f-render.png"]),
    "until": ({"until": "2d"}, ["old-fail.png"]),
    "schema": ({"schema": "invoice", "statuses": ["succeeded"]}, ["ok.png"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_selection_by_each_filter(
    case: str, factory: Any, seeded: dict[str, Any], tmp_path: Path, db_url: str
) -> None:
    filters, expected = CASES[case]
    settings = ops_settings(db_url, tmp_path / "cache")
    redo, skipped = selected(factory, settings, **filters)
    assert redo == expected
    if case == "default is failed":  # failed units of another model or schema are listed
        assert skipped == ["form.png", "other-model.png"]


def test_selection_by_sha_prefix_and_model(
    factory: Any, seeded: dict[str, Any], tmp_path: Path, db_url: str
) -> None:
    settings = ops_settings(db_url, tmp_path / "cache")
    prefix = seeded["f-model.png"].sha256[:10]
    assert selected(factory, settings, documents=[prefix]) == (["f-model.png"], [])
    assert selected(factory, settings, documents=[prefix.upper()]) == (["f-model.png"], [])
    # the model filter matches an id prefix; the configured model cannot redo llava-hf's units
    assert selected(factory, settings, model="llava-hf/") == ([], ["other-model.png"])
    assert selected(factory, settings, model="scripted") == (
        ["f-model.png", "f-render.png", "old-fail.png"],
        ["form.png"],  # its schema is not registered here
    )


def test_bad_filters_are_configuration_errors() -> None:
    with pytest.raises(ConfigError, match="unknown status 'broken'"):
        selection_from(["broken"], None, None, None, None, None, None)
    with pytest.raises(ConfigError, match=r"unknown error category 'oops'.*model_error"):
        selection_from(None, ["oops"], None, None, None, None, None)
    with pytest.raises(ConfigError, match="cannot read the date 'yesterday'"):
        selection_from(None, None, None, "yesterday", None, None, None)


def rerun(
    factory: Any, settings: Any, run_kind: str = "rerun", **filters: Any
) -> list[dict[str, Any]]:
    """What the flow does, without Prefect: plan, then the per-document task's function."""
    args = {
        k: filters.get(k)
        for k in ("statuses", "error_categories", "documents", "since", "until", "schema", "model")
    }
    with factory() as session:
        plan = plan_rerun(session, selection_from(**args), settings)
    with factory.begin() as session:
        run_id = repo.start_run(session, run_kind, {}).id
    overrides = {
        "cache_dir": str(settings.cache_dir),
        "model": {"backend": "scripted"},
        "tiling": {"strategy": "anyres"},
    }
    rows: list[dict[str, Any]] = []
    for document_id, units in plan.by_document().items():
        rows += rerun_document.fn(document_id, [u.to_json() for u in units], overrides, run_id)
    return rows


def counts(factory: Any) -> tuple[int, int, int]:
    with factory() as session:
        return tuple(  # type: ignore[return-value]
            session.scalar(select(func.count()).select_from(model))
            for model in (Document, Extraction, ExtractionEvent)
        )


def history(factory: Any, extraction_id: int) -> list[str]:
    with factory() as session:
        return list(
            session.scalars(
                select(ExtractionEvent.status)
                .where(ExtractionEvent.extraction_id == extraction_id)
                .order_by(ExtractionEvent.id)
            )
        )


def test_rerun_replaces_the_result_keeps_history_and_is_idempotent(
    factory: Any, tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCEXTRACT_DB_URL", db_url)
    settings = ops_settings(db_url, tmp_path / "cache")
    failed = seed(factory, tmp_path / "in", "a.png", "failed", category="model_error")
    done = seed(factory, tmp_path / "in", "b.png", "succeeded", record={"total": "1.00"})
    documents, extractions, _ = counts(factory)

    rows = rerun(factory, settings, error_categories=["model_error"])
    assert [(r["path"], r["did_work"]) for r in rows] == [(str(failed.path), True)]
    with factory() as session:
        row = session.get(Extraction, failed.extraction_id)
        assert row is not None and row.status == "needs_review"  # the scripted empty record
        assert row.record is not None and row.error_category is None and row.attempts == 2
        assert row.model_id == MODEL_ID
    assert history(factory, failed.extraction_id) == [
        "running",
        "failed",
        "running",
        "needs_review",
    ]
    with factory() as session:  # the failed attempt is all there in the history
        first = session.scalars(
            select(ExtractionEvent).where(ExtractionEvent.status == "failed")
        ).one()
        assert (
            first.error_category == "model_error" and first.error_message == "model_error on a.png"
        )
    assert history(factory, done.extraction_id) == ["running", "succeeded"]
    assert counts(factory)[:2] == (documents, extractions)  # nothing duplicated

    events = counts(factory)[2]
    assert rerun(factory, settings, error_categories=["model_error"]) == []  # nothing left
    assert counts(factory) == (documents, extractions, events)


def test_a_failed_rerun_keeps_the_earlier_record(factory: Any, tmp_path: Path) -> None:
    kept = seed(factory, tmp_path, "r.png", "needs_review", record={"total": "5.00"})
    with factory.begin() as session:
        extraction = session.get(Extraction, kept.extraction_id)
        unit = repo.UnitOfWork(
            kept.document_id, "invoice", extraction.schema_version, MODEL_ID, PROMPT_VERSION
        )
        again = repo.claim(session, unit, "w", lease=timedelta(hours=1), redo=[Status.NEEDS_REVIEW])
        assert again is not None
        failure = repo.ExtractionOutcome(
            "failed", error_category="model_error", error_message="OOM"
        )
        assert repo.save_outcome(session, again.id, "w", failure)
    with factory() as session:
        row = session.get(Extraction, kept.extraction_id)
        assert row is not None
        assert (row.status, row.record, row.error_category) == (
            "needs_review",
            {"total": "5.00"},
            None,
        )
        events = session.scalars(
            select(ExtractionEvent)
            .where(ExtractionEvent.extraction_id == row.id)
            .order_by(ExtractionEvent.id)
        ).all()
    assert [e.status for e in events] == [
        "running",
        "needs_review",
        "running",
        "failed",
        "needs_review",
    ]
    assert events[3].error_message == "OOM" and "earlier needs_review record was kept" in (
        events[4].error_message or ""
    )


def test_a_moved_file_is_found_by_its_last_seen_path_with_the_same_bytes(
    factory: Any, tmp_path: Path, db_url: str
) -> None:
    settings = ops_settings(db_url, tmp_path / "cache")
    first = seed(factory, tmp_path / "old", "m.png", "failed", category="model_error")
    moved = tmp_path / "new" / "renamed.png"
    moved.parent.mkdir()
    shutil.copy(first.path, moved)
    register(factory, moved, settings)  # seen again under a new name
    first.path.write_bytes(b"other content now")  # the old path holds something else
    found = locate(factory, first.document_id, settings)
    assert isinstance(found, Registered) and found.path == str(moved)
    moved.unlink()
    first.path.unlink()
    message = locate(factory, first.document_id, settings)
    assert isinstance(message, str)
    assert "source file not found" in message and "renamed.png" in message


def test_a_missing_file_reruns_from_a_complete_page_cache(
    factory: Any, tmp_path: Path, db_url: str
) -> None:
    from pipeline.backends.scripted import ScriptedModel

    settings = ops_settings(db_url, tmp_path / "cache")
    path = make_png(tmp_path / "c.png", "cached")
    broken = ScriptedModel(lambda request, n: ModelError("boom"), model_id=MODEL_ID)
    registered = register(factory, path, settings)
    [outcome] = process(factory, registered, settings, model=broken)
    assert outcome.status == "failed"  # but the pages were rendered into the cache
    path.unlink()
    found = locate(factory, registered.document_id, settings)
    assert isinstance(found, Registered)
    [again] = process(factory, found, settings, redo=[Status.FAILED])
    assert again.status == "needs_review" and again.did_work


@pytest.mark.slow
def test_rerun_through_the_cli_and_the_prefect_flow(
    prefect_api_url: str, sqlite_url: str, tmp_path: Path
) -> None:
    factory = session_factory(open_database(sqlite_url))
    doc = seed(factory, tmp_path / "in", "x.png", "failed", category="render_timeout")
    seed(factory, tmp_path / "in", "y.png", "succeeded", record={"total": "2.00"})
    env = dict(
        os.environ,
        PREFECT_API_URL=prefect_api_url,
        DOCEXTRACT_CACHE_DIR=str(tmp_path / "c"),
        DOCEXTRACT_TILING__STRATEGY="anyres",
    )
    env.pop("DOCEXTRACT_DB_URL", None)
    base = [sys.executable, "-m", "pipeline", "rerun", "--db", sqlite_url, "--backend", "scripted"]

    def cli(*args: str) -> Any:
        result = subprocess.run(
            [*base, *args, "--json"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout)

    plan = cli("--dry-run", "--error-category", "render_timeout")
    assert [u["name"] for u in plan["units"]] == ["x.png"]
    assert history(factory, doc.extraction_id) == ["running", "failed"]  # a dry run changes nothing

    result = cli("--error-category", "render_timeout")
    assert [(o["schema"], o["status"], o["did_work"]) for o in result["outcomes"]] == [
        ("invoice", "needs_review", True)
    ]
    assert history(factory, doc.extraction_id)[-1] == "needs_review"
    with factory() as session:
        run = session.scalars(select(Run).order_by(Run.id.desc())).first()
        assert run is not None and run.kind == "rerun" and run.flow_run_id
        assert run.counts["did_work"] == 1 and run.parameters["selection"]["error_categories"] == [
            "render_timeout"
        ]
    assert cli("--dry-run", "--error-category", "render_timeout")["units"] == []  # all done


def test_forget_removes_what_a_mistaken_model_left(db_url: str, tmp_path: Path) -> None:
    """`docextract forget --model M` removes exactly M's extractions and their history."""
    from typer.testing import CliRunner

    from pipeline.cli import app

    factory = session_factory(open_database(db_url))
    with factory.begin() as session:
        document = repo.register_document(session, tmp_path / "a.pdf", "ab" * 32, 10, None)
        for model_id in ("tiny-randm", "tiny-random-v1"):
            unit = repo.UnitOfWork(document.id, "invoice", "1.1", model_id, "p1")
            repo.claim(session, unit, "w", lease=timedelta(hours=1))
            repo.release(session, repo.current_extraction(session, unit).id, "w", "config")
    cli = CliRunner()
    dry = cli.invoke(app, ["forget", "--model", "tiny-randm", "--dry-run", "--db", db_url])
    assert dry.exit_code == 0 and "would remove 1 extraction(s)" in dry.output, dry.output
    done = cli.invoke(app, ["forget", "--model", "tiny-randm", "--db", db_url])
    assert done.exit_code == 0 and "removed 1 extraction(s)" in done.output, done.output
    with factory() as session:
        assert session.scalars(select(Extraction.model_id)).all() == ["tiny-random-v1"]
        events = session.scalars(select(ExtractionEvent)).all()
        assert {e.extraction.model_id for e in events} == {"tiny-random-v1"}
