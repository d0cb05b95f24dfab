"""Every flow run leaves its summary in Prefect: log lines (counts per status, the failures with
reasons), a markdown artifact on its run page and its counts as its final state's message;
rerun dry runs too."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from _seed import make_png, ops_settings
from sqlalchemy import select

from flows.report import outcome_message, outcome_report, plan_report
from pipeline.store.db import open_database, session_factory
from pipeline.store.models import Run

REPO = Path(__file__).resolve().parent.parent


def row(name: str, status: str, reason: str | None = None, did_work: bool = True) -> dict[str, Any]:
    return {
        "path": f"/inbox/{name}",
        "sha256": "ab" * 32,
        "schema": "invoice",
        "status": status,
        "reason": reason,
        "pages": 1,
        "seconds": 0.1,
        "did_work": did_work,
    }


def test_outcome_report_counts_each_status_and_lists_failures_with_reasons() -> None:
    rows = [
        row("a.pdf", "succeeded"),
        row("b.pdf", "succeeded", did_work=False),
        row("c.pdf", "failed", "corrupt: bad | xref\ntable"),
        row("d.pdf", "partial", "1 of 3 pages failed: render_timeout"),
        row("e.pdf", "needs_review", "total does not match the line items"),
    ]
    lines, markdown = outcome_report("docextract nightly", rows)
    assert lines == [
        "docextract nightly: 5 document(s); 2 succeeded, 1 failed, 1 partial, 1 needs_review; "
        "4 extracted now, 1 unchanged",
        "failed: c.pdf (invoice): corrupt: bad | xref table",
        "partial: d.pdf (invoice): 1 of 3 pages failed: render_timeout",
    ]
    assert markdown.startswith("# docextract nightly\n")
    assert "| succeeded | 2 |" in markdown and "| needs_review | 1 |" in markdown
    assert "| c.pdf | abababababab | invoice | failed | corrupt: bad \\| xref table |" in markdown
    assert "e.pdf" not in markdown  # a valid record under review is not a failure
    assert outcome_report("docextract run", [])[0] == [
        "docextract run: 0 document(s); nothing to do; 0 extracted now, 0 unchanged"
    ]
    assert (
        outcome_message(rows) == "5 document(s): 2 succeeded, 1 failed, 1 partial, 1 needs_review"
    )


def test_plan_report_lists_what_would_be_redone_and_what_is_skipped() -> None:
    unit = {
        "name": "a.pdf",
        "sha256": "cd" * 32,
        "schema_name": "invoice",
        "model_id": "llava-hf/llava-v1.6-mistral-7b-hf",
        "status": "failed",
        "reason": "model_error: out of memory",
    }
    plan = {"units": [unit], "skipped": [{**unit, "name": "b.pdf", "skip_reason": "file gone"}]}
    lines, markdown = plan_report("docextract rerun (dry run)", plan)
    assert lines == [
        "docextract rerun (dry run): 1 extraction(s) would be redone, 1 skipped",
        "skipped: b.pdf (invoice): file gone",
    ]
    assert "| a.pdf | cdcdcdcdcdcd | invoice | llava-hf/llava-v1.6-mistral-7b-hf | failed |" in (
        markdown
    )
    assert "## Skipped (1)" in markdown and "| b.pdf | invoice | failed | file gone |" in markdown


async def _artifacts_and_logs(flow_run_id: str | None, key: str) -> tuple[list[Any], list[str]]:
    from prefect import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterKey,
        LogFilter,
        LogFilterFlowRunId,
    )

    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )
        if flow_run_id is None:
            return artifacts, []
        logs = await client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
        )
        return artifacts, [log.message for log in logs]


async def _final_state(flow_run_id: str) -> Any:
    from prefect import get_client

    async with get_client() as client:
        return (await client.read_flow_run(flow_run_id)).state  # type: ignore[arg-type]


def test_a_run_logs_its_summary_and_a_dry_run_publishes_its_plan(
    prefect_api_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db_url = f"sqlite:///{tmp_path / 'd.db'}"
    inbox = tmp_path / "inbox"
    make_png(inbox / "good.png", "INVOICE 1")
    (inbox / "junk.pdf").write_bytes(b"this is not a PDF at all")
    env = {
        **os.environ,
        "PREFECT_API_URL": prefect_api_url,
        "DOCEXTRACT_CACHE_DIR": str(tmp_path / "cache"),
        "DOCEXTRACT_MODEL__BACKEND": "scripted",
        "DOCEXTRACT_WORKERS": "1",
    }
    env.pop("PREFECT_LOGGING_LEVEL", None)  # the CLI's quiet defaults decide, as for a user
    command = ["run", str(inbox), "--schema", "invoice", "--db", db_url, "--json"]
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", *command],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "docextract run:" not in result.stderr  # the summary goes to Prefect, not the terminal
    statuses = sorted(r["status"] for r in json.loads(result.stdout))
    assert statuses[0] == "failed"
    with session_factory(open_database(db_url, create=False))() as session:
        run = session.scalars(select(Run)).one()
        flow_run_id = run.flow_run_id
        assert run.deployment is None  # started from the CLI: no deployment (and no API call)

    monkeypatch.setenv("PREFECT_API_URL", prefect_api_url)
    for _ in range(40):  # the run's logs reach the server in batches
        artifacts, logs = asyncio.run(_artifacts_and_logs(flow_run_id, "run-summary"))
        if any(line.startswith("failed: junk.pdf") for line in logs):
            break
        time.sleep(0.5)
    summary = [line for line in logs if line.startswith("docextract run: 2 document(s)")]
    assert summary and "1 failed" in summary[0], logs
    assert any(line.startswith("failed: junk.pdf (invoice): ") for line in logs), logs
    mine = [a for a in artifacts if str(a.flow_run_id) == flow_run_id]
    assert len(mine) == 1 and mine[0].type == "markdown"
    assert "| junk.pdf |" in str(mine[0].data) and "| failed | 1 |" in str(mine[0].data)
    state = asyncio.run(_final_state(flow_run_id))
    assert state.is_completed() and state.message == "2 document(s): 1 needs_review, 1 failed"

    from flows.rerun import run_rerun

    monkeypatch.setenv("DOCEXTRACT_DB_URL", db_url)
    settings = ops_settings(db_url, tmp_path / "cache")
    overrides = {"cache_dir": str(tmp_path / "cache"), "model": {"backend": "scripted"}}
    planned = run_rerun({"statuses": ["failed"], "dry_run": True, "overrides": overrides}, settings)
    assert [u["name"] for u in planned["plan"]["units"]] == ["junk.pdf"]
    artifacts, _ = asyncio.run(_artifacts_and_logs(None, "rerun-dry-run"))
    latest = max(artifacts, key=lambda a: a.created)
    assert "1 extraction(s) would be redone" in str(latest.description)
    assert "| junk.pdf |" in str(latest.data)
    state = asyncio.run(_final_state(str(latest.flow_run_id)))
    assert state.message == "dry run: 1 extraction(s) would be redone, 0 skipped"

    redone = run_rerun({"statuses": ["failed"], "overrides": overrides}, settings)
    assert [o["status"] for o in redone["outcomes"]] == ["failed"]  # the caller gets the rows
    with session_factory(open_database(db_url, create=False))() as session:
        rerun_id = session.scalars(select(Run.flow_run_id).where(Run.kind == "rerun")).one()
    state = asyncio.run(_final_state(rerun_id))
    assert state.is_completed() and state.message == "1 document(s): 1 failed"
