"""`docextract serve`: the nightly and rerun deployments, their schedule and parameters (no
secrets), registered on the session's Prefect server, and a rerun started there and executed by
a runner as `serve` would."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _seed import seed
from sqlalchemy import select
from typer.testing import CliRunner

from flows.deploy import local_timezone, nightly_deployment, rerun_deployment
from pipeline.cli import app
from pipeline.errors import ConfigError
from pipeline.store.db import open_database, session_factory
from pipeline.store.models import Extraction, Run

SECRET_URL = "postgresql://etl:s3cret@db.internal/docextract"


def test_nightly_deployment_has_the_cron_timezone_and_parameters(tmp_path: Path) -> None:
    overrides = {"schemas": ["invoice"], "workers": 3}
    nightly = nightly_deployment(tmp_path, "0 2 * * *", "Europe/Berlin", overrides)
    schedule = nightly.schedules[0].schedule  # type: ignore[index]
    assert (schedule.cron, schedule.timezone) == ("0 2 * * *", "Europe/Berlin")  # type: ignore[union-attr]
    assert nightly.parameters == {
        "paths": [str(tmp_path.resolve())],
        "overrides": overrides,
        "kind": "nightly",
    }
    assert nightly.entrypoint == "flows.extract.extract_flow"  # importable from any folder
    assert nightly.concurrency_limit == 1  # two nightly runs never overlap

    rerun = rerun_deployment(overrides)
    assert not rerun.schedules and rerun.entrypoint == "flows.rerun.rerun_flow"
    assert rerun.parameters == {"statuses": ["failed"], "overrides": overrides, "dry_run": False}


def test_bad_schedules_and_secret_parameters_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid cron expression '0 2 \\* \\*'"):
        nightly_deployment(tmp_path, "0 2 * *", "UTC", {})
    with pytest.raises(ConfigError, match="unknown time zone 'Mars/Olympus'"):
        nightly_deployment(tmp_path, "0 2 * * *", "Mars/Olympus", {})
    with pytest.raises(ConfigError, match="DOCEXTRACT_DB_URL"):
        rerun_deployment({"db_url": SECRET_URL})
    assert local_timezone()  # some IANA name, "UTC" at worst


def test_serve_dry_run_prints_the_deployments_without_the_database_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCEXTRACT_DB_URL", f"sqlite:///{tmp_path / 'served.db'}")
    args = ["serve", "--inbox", str(tmp_path), "--cron", "30 1 * * 1-5", "--timezone", "UTC"]
    result = CliRunner().invoke(app, [*args, "--backend", "scripted", "--dry-run"])
    assert result.exit_code == 0, result.output
    described = json.loads(result.output)
    assert [d["name"] for d in described] == [
        "docextract-extract/nightly",
        "docextract-rerun/rerun",
    ]
    assert described[0]["schedules"] == [{"cron": "30 1 * * 1-5", "timezone": "UTC"}]
    assert "served.db" not in result.output
    missing = CliRunner().invoke(app, ["serve", "--inbox", str(tmp_path / "nope"), "--dry-run"])
    assert missing.exit_code == 2 and "is not a folder" in " ".join(missing.output.split())


def test_serve_refuses_to_run_without_a_prefect_server(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DOCEXTRACT_"))}
    env.update(
        PREFECT_HOME=str(tmp_path / "prefect"),
        DOCEXTRACT_DB_URL=f"sqlite:///{tmp_path / 'd.db'}",
        DOCEXTRACT_PREFECT__SERVER="ephemeral",
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "serve",
            "--inbox",
            str(tmp_path),
            "--backend",
            "scripted",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    message = " ".join(result.stderr.split())  # rich wraps long lines
    assert "PREFECT_API_URL" in message and "prefect server start" in message


@pytest.mark.slow
def test_deployments_register_and_a_rerun_started_from_the_server_runs(
    prefect_api_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect import get_client
    from prefect.deployments import run_deployment
    from prefect.runner import Runner

    url = f"sqlite:///{tmp_path / 'served.db'}"
    factory = session_factory(open_database(url))
    failed = seed(factory, tmp_path / "in", "late.png", "failed", category="model_error")
    monkeypatch.setenv("PREFECT_API_URL", prefect_api_url)
    monkeypatch.setenv("DOCEXTRACT_DB_URL", url)  # how `serve` hands it to its flow runs
    monkeypatch.setenv("DOCEXTRACT_CACHE_DIR", str(tmp_path / "cache"))
    overrides = {"model": {"backend": "scripted"}, "tiling": {"strategy": "anyres"}}
    nightly = nightly_deployment(tmp_path / "in", "0 2 * * *", "Europe/Berlin", overrides)
    nightly.apply()
    runner = Runner(pause_on_shutdown=False)
    runner.add_deployment(rerun_deployment(overrides))

    stored = read_deployments(get_client)
    assert (
        stored["nightly"]["cron"] == "0 2 * * *"
        and stored["nightly"]["timezone"] == "Europe/Berlin"
    )
    assert stored["rerun"]["cron"] is None
    assert "s3cret" not in json.dumps(stored) and url not in json.dumps(stored)

    flow_run = run_deployment(
        "docextract-rerun/rerun", parameters={"error_categories": ["model_error"]}, timeout=0
    )
    asyncio.run(runner.start(run_once=True))  # what `serve` does, once
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(flow_run.id).state  # type: ignore[union-attr]
    assert state is not None and state.is_completed(), state
    with factory() as session:
        row = session.get(Extraction, failed.extraction_id)
        assert row is not None and row.status == "needs_review" and row.attempts == 2
        run = session.scalars(select(Run).where(Run.kind == "rerun")).one()
        assert run.deployment == "rerun" and run.flow_run_id == str(flow_run.id)  # type: ignore[union-attr]


def read_deployments(get_client: Any) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    with get_client(sync_client=True) as client:
        for name in ("docextract-extract/nightly", "docextract-rerun/rerun"):
            deployment = client.read_deployment_by_name(name)
            schedule = deployment.schedules[0].schedule if deployment.schedules else None
            found[deployment.name] = {
                "cron": getattr(schedule, "cron", None),
                "timezone": getattr(schedule, "timezone", None),
                "parameters": deployment.parameters,
            }
    return found


def test_serve_accepts_auto_routing_like_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One name check for every command: `auto` is a schema choice (its candidates are checked),
    for `serve` as for `run` (the copy serve had refused it as an unknown schema)."""
    monkeypatch.setenv("DOCEXTRACT_DB_URL", f"sqlite:///{tmp_path / 'served.db'}")
    args = ["serve", "--inbox", str(tmp_path), "--backend", "scripted", "--dry-run"]
    result = CliRunner().invoke(app, [*args, "--schema", "auto"])
    assert result.exit_code == 0, result.output
    (nightly, _) = json.loads(result.output)
    assert nightly["parameters"]["overrides"]["schemas"] == ["auto"]
    result = CliRunner().invoke(app, [*args, "--schema", "auto,nonsense"])
    assert result.exit_code == 2 and "nonsense" in result.output
