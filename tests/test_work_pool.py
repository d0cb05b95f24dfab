"""Many workers: the fan-out over a Prefect process work pool.

The main slow test runs the real thing on this machine: the session's Prefect server, a process
work pool, two `prefect worker start` subprocesses sharing one PostgreSQL database, and
`docextract pool deploy` / `pool run` over 20 documents in chunks of 5. Every document must end
with exactly one extraction, the runs must be visible through the Prefect API, and each worker
must have run at least one chunk; then the nightly fan-out deployment runs on the pool itself and
redoes nothing. Two more slow tests: chunks no worker takes (timeout), and a chunk that fails on
a misconfigured worker. The fast tests cover chunking, the deployments, the report and the
refusals.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _seed import make_png
from _workers import Workers, running_workers
from sqlalchemy import select
from typer.testing import CliRunner

from flows.fanout import (
    ChunkReport,
    FanoutReport,
    chunked,
    merge_overrides,
    require_shared_database,
)
from flows.pool import chunk_deployment, fanout_deployment
from pipeline.cli import app
from pipeline.errors import ConfigError
from pipeline.settings import Settings
from pipeline.store.db import open_database, session_factory
from pipeline.store.models import Document, Extraction, ExtractionEvent, Run

DOCUMENTS, CHUNK = 20, 5
RUN_TIMEOUT_S = 150


def test_chunks_keep_the_order_and_the_last_one_is_short() -> None:
    files = [Path(f"/in/{n:02d}.png") for n in range(12)]
    chunks = chunked(files, 5)
    assert [len(c) for c in chunks] == [5, 5, 2]
    assert [p for chunk in chunks for p in chunk] == [str(f) for f in files]
    assert chunked([], 5) == []
    with pytest.raises(ConfigError, match="chunk size must be at least 1, got 0"):
        chunked(files, 0)


def test_a_runs_overrides_refine_the_deployments_and_never_blank_them() -> None:
    deployed = {"model": {"name": "tiny-random", "backend": "scripted"}, "schemas": ["invoice"]}
    assert merge_overrides(deployed, {}) == deployed
    merged = merge_overrides(deployed, {"model": {"backend": "tiny"}, "workers": 2})
    assert merged == {
        "model": {"name": "tiny-random", "backend": "tiny"},
        "schemas": ["invoice"],
        "workers": 2,
    }
    assert merge_overrides(deployed, {"schemas": ["form"]})["schemas"] == ["form"]
    assert deployed["model"] == {"name": "tiny-random", "backend": "scripted"}  # not mutated


def test_a_pool_refuses_sqlite_and_secret_parameters(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="DOCEXTRACT_DB_URL to the PostgreSQL URL"):
        require_shared_database(Settings(db_url=f"sqlite:///{tmp_path / 'd.db'}"))
    secret = {"db_url": "postgresql://etl:s3cret@db/docextract"}
    with pytest.raises(ConfigError, match="DOCEXTRACT_DB_URL"):
        chunk_deployment("gpu", secret, 2)
    with pytest.raises(ConfigError, match="invalid cron expression"):
        fanout_deployment("gpu", tmp_path, "0 2 * *", "UTC")


def test_the_deployments_import_the_installed_package_and_carry_no_secrets(
    tmp_path: Path,
) -> None:
    overrides = {"model": {"backend": "openai", "base_url": "http://gpu1:8000/v1"}}
    chunk = chunk_deployment("gpu", overrides, workers=4)
    assert (chunk.name, chunk.work_pool_name) == ("gpu", "gpu")
    assert chunk.entrypoint == "flows.extract.extract_flow"  # no code download on the workers
    assert chunk.parameters == {"overrides": overrides, "kind": "run"}
    assert chunk.job_variables == {"env": {"PREFECT_TASK_RUNNER_THREAD_POOL_MAX_WORKERS": "4"}}
    nightly = fanout_deployment("gpu", tmp_path, "0 2 * * *", "Europe/Berlin", chunk_size=25)
    assert nightly.entrypoint == "flows.fanout.fanout_flow" and nightly.concurrency_limit == 1
    assert nightly.parameters["deployment"] == "docextract-extract/gpu"
    assert nightly.parameters["inbox"] == [str(tmp_path.resolve())]
    assert nightly.schedules[0].schedule.cron == "0 2 * * *"  # type: ignore[index,union-attr]


def test_the_report_names_failed_unfinished_and_unrecorded_chunks() -> None:
    def chunk(index: int, state: str, **extra: Any) -> ChunkReport:
        final = state != "Running"
        defaults: dict[str, Any] = {"worker": "w1", "counts": {"outcomes": {"succeeded": 5}}}
        return ChunkReport(
            index, f"id{index}", f"run-{index}", 5, state, final, state == "Completed",
            **{**defaults, **extra},
        )  # fmt: skip

    report = FanoutReport(
        "docextract-extract/gpu",
        "postgresql+psycopg://etl:***@db/docextract",
        20,
        chunks=[
            chunk(1, "Completed"),
            chunk(2, "Crashed", message="worker lost", counts=None),
            chunk(3, "Running", counts=None),
            chunk(4, "Completed", counts=None),
        ],
    )
    problems = report.problems
    assert len(problems) == 3
    assert "chunk 2" in problems[0] and "Crashed on worker 'w1': worker lost" in problems[0]
    assert "picked up by the next run" in problems[0]
    assert "chunk 3" in problems[1] and "did not finish in time" in problems[1]
    assert "chunk 4" in problems[2] and "another database" in problems[2]
    assert report.outcomes() == {"succeeded": 5}  # only what chunks recorded
    assert FanoutReport("d", "db", 0, chunks=report.chunks, waited=False).problems == []


def test_pool_commands_refuse_to_run_without_a_prefect_server(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DOCEXTRACT_"))}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), DOCEXTRACT_MODEL__BACKEND="scripted")
    command = [sys.executable, "-m", "pipeline", "pool", "run", str(tmp_path), "--pool", "p"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    message = " ".join(result.stderr.split())  # rich wraps long lines
    assert "PREFECT_API_URL" in message and "prefect server start" in message


@pytest.fixture
def pool_env(postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment of this machine's CLI and of its workers: a fresh PostgreSQL database,
    the scripted model, whole pages (the parameters carry the same, the environment is what a
    worker on another machine would have)."""
    open_database(postgres_url)
    values = {
        "DOCEXTRACT_DB_URL": postgres_url,
        "DOCEXTRACT_CACHE_DIR": str(tmp_path / "cache"),
        "DOCEXTRACT_MODEL__BACKEND": "scripted",
        "DOCEXTRACT_TILING__STRATEGY": "anyres",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


@pytest.fixture
def workers(prefect_api_url: str, pool_env: dict[str, str], tmp_path: Path) -> Iterator[Workers]:
    """Two workers on a fresh pool, with this machine's database and settings, each running one
    flow run at a time. Prefect workers do not share out the runs: each one polls and submits what
    its limit allows, so at a higher limit the first to poll can take every chunk (it did in CI,
    4 of 4). At one run each, a worker busy with a chunk cannot take the next one; the other must,
    which is what the test checks (both serve the pool), without a race on who polls first."""
    env = {**os.environ, **pool_env, "PREFECT_API_URL": prefect_api_url}
    with running_workers(["worker-1", "worker-2"], env, tmp_path, limit=1) as started:
        yield started


@pytest.mark.slow
def test_two_workers_on_a_process_pool_do_each_document_exactly_once(
    workers: Workers, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    for number in range(DOCUMENTS):
        make_png(inbox / f"doc-{number:02d}.png", f"document {number}")
    cli = CliRunner()
    pool = ["--pool", workers.pool, "--backend", "scripted", "--schema", "invoice"]
    nightly = ["--cron", "0 2 * * *", "--timezone", "UTC", "--inbox", str(inbox)]
    deployed = cli.invoke(app, ["pool", "deploy", *pool, "--workers", "2", *nightly])
    assert deployed.exit_code == 0, deployed.output
    assert f"registered docextract-fanout/{workers.pool}" in deployed.output

    started = time.monotonic()
    args = ["pool", "run", str(inbox), *pool, "--chunk-size", str(CHUNK), "--json"]
    result = cli.invoke(app, [*args, "--timeout", str(RUN_TIMEOUT_S)])
    seconds = time.monotonic() - started
    assert result.exit_code == 0, f"{result.output}\n{workers.log_tails()}"
    report = json.loads(result.stdout)
    print(f"fan-out of {DOCUMENTS} documents over 2 workers: {seconds:.1f} s")

    chunks = report["chunks"]
    assert [c["files"] for c in chunks] == [CHUNK] * (DOCUMENTS // CHUNK)
    assert all(c["state"] == "Completed" for c in chunks), chunks
    assert report["outcomes"] == {"needs_review": DOCUMENTS}  # the empty record fails rules
    assert_each_document_done_once(os.environ["DOCEXTRACT_DB_URL"])
    ran = assert_runs_visible_through_the_api(workers.pool, report)
    assert set(ran.values()) == set(workers.names), f"chunks per worker: {Counter(ran.values())}"
    assert {c["worker"] for c in chunks} == set(workers.names)
    assert_the_nightly_parent_runs_on_the_pool_and_redoes_nothing(workers)


def assert_the_nightly_parent_runs_on_the_pool_and_redoes_nothing(workers: Workers) -> None:
    """Start the nightly fan-out as its schedule would: the parent runs on a worker of the pool
    (from the installed package) and starts chunk runs of 50 there; the inbox is already done."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
    from prefect.deployments import run_deployment

    parent = run_deployment(
        f"docextract-fanout/{workers.pool}", timeout=RUN_TIMEOUT_S, poll_interval=1
    )
    assert parent.state is not None and parent.state.is_completed(), (  # type: ignore[union-attr]
        f"{parent.state}\n{workers.log_tails()}"  # type: ignore[union-attr]
    )
    children = FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent.id]))  # type: ignore[union-attr]
    with get_client(sync_client=True) as client:
        chunks = client.read_flow_runs(flow_run_filter=children)
    assert len(chunks) == 1 and chunks[0].state is not None and chunks[0].state.is_completed()
    url = os.environ["DOCEXTRACT_DB_URL"]
    factory = session_factory(open_database(url, create=False))
    with factory() as session:
        run = session.scalars(select(Run).where(Run.flow_run_id == str(chunks[0].id))).one()
    assert run.kind == "nightly" and run.counts["documents"] == DOCUMENTS
    assert run.counts["did_work"] == 0  # every document already done: claims say so
    assert_each_document_done_once(url)


def assert_each_document_done_once(url: str) -> None:
    factory = session_factory(open_database(url, create=False))
    with factory() as session:
        assert session.query(Document).count() == DOCUMENTS
        extractions = session.scalars(select(Extraction)).all()
        events = session.scalars(select(ExtractionEvent).order_by(ExtractionEvent.id)).all()
    assert len(extractions) == DOCUMENTS
    assert {e.attempts for e in extractions} == {1}
    history: dict[int, list[str]] = {}
    for event in events:
        history.setdefault(event.extraction_id, []).append(event.status)
    assert len(history) == DOCUMENTS
    assert all(h == ["running", "needs_review"] for h in history.values()), history


def assert_runs_visible_through_the_api(pool: str, report: dict[str, Any]) -> dict[str, str]:
    """The chunk runs of the pool's deployment and their parent, read back from the server.
    Returns the worker that ran each chunk run (by flow run id)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(f"docextract-extract/{pool}")
        only_it = DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
        runs = client.read_flow_runs(deployment_filter=only_it)
        parent = client.read_flow_run(uuid.UUID(report["parent_flow_run_id"]))
        parents = {
            client.read_task_run(r.parent_task_run_id).flow_run_id
            for r in runs
            if r.parent_task_run_id
        }
    assert sorted(str(r.id) for r in runs) == sorted(c["flow_run_id"] for c in report["chunks"])
    assert all(r.state is not None and r.state.is_completed() for r in runs)
    assert all(r.work_pool_name == pool for r in runs)
    assert parent.state is not None and parent.state.is_completed(), parent.state
    assert parents == {parent.id}  # linked as subflows of the fan-out
    for run in runs:  # what a chunk costs besides its documents: queueing and process start
        counts = next(c["counts"] for c in report["chunks"] if c["flow_run_id"] == str(run.id))
        waited = (run.start_time - run.expected_start_time).total_seconds()  # type: ignore[operator]
        print(
            f"{run.name}: {run.total_run_time.total_seconds():.1f} s running, "
            f"{counts['seconds']:.1f} s extracting, {waited:.1f} s from scheduled to started"
        )
    return {str(r.id): str(r.labels.get("prefect.worker.name")) for r in runs}


@pytest.mark.slow
def test_chunks_that_no_worker_takes_are_reported_and_the_command_fails(
    prefect_api_url: str, pool_env: dict[str, str], tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    for number in range(3):
        make_png(inbox / f"doc-{number}.png", f"document {number}")
    pool = ["--pool", f"idle-pool-{uuid.uuid4().hex[:8]}", "--backend", "scripted"]
    cli = CliRunner()
    assert cli.invoke(app, ["pool", "deploy", *pool]).exit_code == 0
    args = ["pool", "run", str(inbox), *pool, "--chunk-size", "2", "--timeout", "3"]
    result = cli.invoke(app, args)
    assert result.exit_code == 1, result.output
    message = " ".join(result.stderr.split())
    assert message.count("did not finish in time (still Scheduled)") == 2, message
    factory = session_factory(open_database(pool_env["DOCEXTRACT_DB_URL"], create=False))
    with factory() as session:  # nothing touched: the next run (or a late worker) does them
        assert session.query(Document).count() == 0


@pytest.mark.slow
def test_pool_run_keeps_the_deployed_model(
    prefect_api_url: str, pool_env: dict[str, str], tmp_path: Path
) -> None:
    """`pool run` without --model starts chunk runs with the deployed model, not the default."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    inbox = tmp_path / "inbox"
    make_png(inbox / "doc-0.png", "document 0")
    pool = f"model-pool-{uuid.uuid4().hex[:8]}"
    cli = CliRunner()
    deployed = ["--model", "tiny-random", "--backend", "scripted"]
    assert cli.invoke(app, ["pool", "deploy", "--pool", pool, *deployed]).exit_code == 0
    args = ["pool", "run", str(inbox), "--pool", pool, "--chunk-size", "1", "--timeout", "1"]
    assert cli.invoke(app, args).exit_code == 1  # no worker: the chunk stays Scheduled
    with get_client(sync_client=True) as client:
        (run,) = client.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[pool]))
        )
    assert run.parameters["overrides"]["model"] == {"name": "tiny-random", "backend": "scripted"}


@pytest.mark.slow
def test_a_chunk_that_fails_on_its_worker_is_reported_and_its_documents_stay_claimable(
    prefect_api_url: str, pool_env: dict[str, str], tmp_path: Path
) -> None:
    """A worker whose DOCEXTRACT_DB_URL points nowhere: its chunk run fails, the parent reports
    it with the worker's name, and the shared database holds nothing the next run would skip."""
    inbox = tmp_path / "inbox"
    for number in range(2):
        make_png(inbox / f"doc-{number}.png", f"document {number}")
    broken = {**pool_env, "DOCEXTRACT_DB_URL": "postgresql://nobody@127.0.0.1:1/none"}
    env = {**os.environ, **broken, "PREFECT_API_URL": prefect_api_url}
    with running_workers(["misconfigured"], env, tmp_path, prefix="broken-pool") as workers:
        pool = ["--pool", workers.pool, "--backend", "scripted", "--schema", "invoice"]
        cli = CliRunner()
        assert cli.invoke(app, ["pool", "deploy", *pool]).exit_code == 0
        args = ["pool", "run", str(inbox), *pool, "--timeout", str(RUN_TIMEOUT_S), "--json"]
        result = cli.invoke(app, args)
    assert result.exit_code == 1, f"{result.output}\n{workers.log_tails()}"
    (chunk,) = json.loads(result.stdout)["chunks"]
    assert chunk["state"] == "Failed" and chunk["worker"] == "misconfigured", chunk
    assert "Cannot connect to the database" in chunk["message"], chunk
    message = " ".join(result.stderr.split())
    assert "ended Failed on worker 'misconfigured'" in message, message
    assert "picked up by the next run" in message
    factory = session_factory(open_database(pool_env["DOCEXTRACT_DB_URL"], create=False))
    with factory() as session:
        assert session.query(Extraction).count() == 0
