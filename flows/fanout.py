"""Fan-out over a Prefect work pool: one flow run of the extraction per chunk of the inbox.

The parent discovers the files, splits them into chunks and starts one run of the chunk
deployment (`extract_flow` registered on a work pool, see flows/pool.py) per chunk; workers on
any machine pick them up. The parent then waits (bounded) and reports each chunk's state, its
worker and its counts as the chunk recorded them in the shared database.

Parameters are paths and non-secret overrides only. Workers read the database URL from their own
environment (DOCEXTRACT_DB_URL); the parent reads it from its own and checks that every finished
chunk recorded its run there, which catches a worker pointed at another database.

Nothing is lost when a chunk fails: its documents that were not finished were never claimed, or
their claims were released (configuration or database errors) or expire after
`claim_lease_s` (a worker that died); the next run picks them up. Documents are never done twice:
the claims in the database decide, not the chunking.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect.runtime import flow_run as current_flow_run
from prefect.states import Completed, Failed, State
from sqlalchemy.engine import make_url

from flows.extract import build_settings
from pipeline.errors import ConfigError
from pipeline.ingest import discover
from pipeline.settings import Settings
from pipeline.store.db import safe_url, session_factory, shared_engine
from pipeline.store.queries import run_counts

DEFAULT_CHUNK_SIZE = 50
DEFAULT_TIMEOUT_S = 8 * 3600.0  # a night
POLL_S = 2.0
WORKER_LABEL = "prefect.worker.name"  # set on a flow run by the worker that runs it
_PAGE = 100  # flow runs / Run rows read per request (the API caps a page at 200)


@dataclass(frozen=True)
class ChunkReport:
    """One chunk's flow run as the parent last saw it, with what it recorded in the database."""

    index: int  # 1-based
    flow_run_id: str
    flow_run_name: str
    files: int
    state: str  # Prefect state name: Scheduled, Running, Completed, Failed, Crashed, ...
    final: bool
    completed: bool
    message: str | None = None
    worker: str | None = None  # the Prefect worker that ran it
    counts: dict[str, Any] | None = None  # the chunk's Run.counts (None: nothing recorded)


@dataclass(frozen=True)
class FanoutReport:
    """What the parent started and how each chunk ended (or stood when the wait ended)."""

    deployment: str
    database: str
    files: int
    parent_flow_run_id: str | None = None
    chunks: list[ChunkReport] = field(default_factory=list)
    waited: bool = True

    @property
    def problems(self) -> list[str]:
        """One line per chunk that did not complete (empty when all did, or when not waited)."""
        if not self.waited:
            return []
        return [line for c in self.chunks if (line := _problem(c, self.database))]

    def outcomes(self) -> dict[str, int]:
        """Statuses summed over the chunks that recorded their counts."""
        total: dict[str, int] = {}
        for chunk in self.chunks:
            for status, count in ((chunk.counts or {}).get("outcomes") or {}).items():
                total[status] = total.get(status, 0) + int(count)
        return total

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "outcomes": self.outcomes(), "problems": self.problems}


def _problem(chunk: ChunkReport, database: str) -> str:
    name = f"chunk {chunk.index} ({chunk.flow_run_name!r}, {chunk.files} file(s))"
    if not chunk.final:
        return f"{name} did not finish in time (still {chunk.state}); it goes on without the parent"
    if not chunk.completed:
        worker = f" on worker {chunk.worker!r}" if chunk.worker else ""
        return (
            f"{name} ended {chunk.state}{worker}: {chunk.message or 'no message'}; its unfinished "
            "documents are picked up by the next run"
        )
    if chunk.counts is None:
        return (
            f"{name} completed on worker {chunk.worker!r} but recorded no run in {database!r}: "
            "that worker uses another database; set the same DOCEXTRACT_DB_URL on every worker"
        )
    return ""


def chunked(files: Sequence[Path], size: int) -> list[list[str]]:
    """`files` (in order) as consecutive chunks of at most `size` paths. Raises ConfigError
    when `size` is below 1."""
    if size < 1:
        raise ConfigError(f"chunk size must be at least 1, got {size!r}")
    paths = [str(f) for f in files]
    return [paths[i : i + size] for i in range(0, len(paths), size)]


def require_shared_database(settings: Settings) -> str:
    """The database URL, checked to be one that workers on several machines can share. Raises
    ConfigError for SQLite (each machine would write its own file and redo the others' work)."""
    url = settings.db_url.get_secret_value()
    if make_url(url).get_backend_name() == "sqlite":
        raise ConfigError(
            f"workers on a pool share one database, but the database is {safe_url(url)!r} "
            "(SQLite, one file per machine); set DOCEXTRACT_DB_URL to the PostgreSQL URL, the "
            "same on this machine and every worker"
        )
    return url


def check_deployment(name: str) -> UUID:
    """The id of deployment `name` ("flow/deployment"). Raises ConfigError when it is missing."""
    return _read_deployment(name).id


def deployed_overrides(name: str) -> dict[str, Any]:
    """The setting overrides deployment `name` was registered with (`pool deploy --model ...`).
    Raises ConfigError when it is missing."""
    return dict(_read_deployment(name).parameters.get("overrides") or {})


def _read_deployment(name: str) -> Any:
    with get_client(sync_client=True) as client:
        try:
            return client.read_deployment_by_name(name)
        except ObjectNotFound:
            pool = name.partition("/")[2] or "POOL"
            raise ConfigError(
                f"deployment {name!r} is not registered on the Prefect server; register it with "
                f"`docextract pool deploy --pool {pool}`"
            ) from None


def merge_overrides(deployed: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """`given` over `deployed`, group by group: a run's parameters refine the deployment's
    (`--workers` keeps the deployed model), they never blank them (`{}` changes nothing)."""
    merged = dict(deployed)
    for key, value in given.items():
        below = merged.get(key)
        if isinstance(value, dict) and isinstance(below, dict):
            merged[key] = merge_overrides(below, value)
        else:
            merged[key] = value
    return merged


def start_chunks(
    deployment: str, chunks: list[list[str]], parameters: dict[str, Any], key: str
) -> list[FlowRun]:
    """One scheduled flow run of `deployment` per chunk, `parameters` plus the chunk's paths,
    linked to the current flow run. `key` makes each start idempotent (a retried parent does
    not start its chunks twice)."""
    runs = []
    for index, paths in enumerate(chunks, start=1):
        run = run_deployment(
            deployment,
            parameters={**parameters, "paths": paths},
            flow_run_name=f"{key[:8]}-chunk-{index:03d}of{len(chunks):03d}",
            idempotency_key=f"{key}-chunk-{index}",
            timeout=0,  # start them all; waiting is `wait_for`'s job
        )
        assert isinstance(run, FlowRun)  # the sync API returns it, not a coroutine
        runs.append(run)
    return runs


def wait_for(ids: list[UUID], timeout_s: float, poll_s: float = POLL_S) -> dict[UUID, FlowRun]:
    """The flow runs `ids` once all are final, or as they stand after `timeout_s` seconds."""
    deadline = time.monotonic() + timeout_s
    while True:
        runs = read_flow_runs(ids)
        done = all(r.state is not None and r.state.is_final() for r in runs.values())
        if done or time.monotonic() >= deadline:
            return runs
        time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))


def read_flow_runs(ids: list[UUID]) -> dict[UUID, FlowRun]:
    found: dict[UUID, FlowRun] = {}
    with get_client(sync_client=True) as client:
        for start in range(0, len(ids), _PAGE):
            page = ids[start : start + _PAGE]
            flow_filter = FlowRunFilter(id=FlowRunFilterId(any_=page))
            for run in client.read_flow_runs(flow_run_filter=flow_filter, limit=len(page)):
                found[run.id] = run
    return found


def recorded_counts(settings: Settings, flow_run_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Run.counts by flow run id, for the runs that finished recording in the shared database."""
    factory = session_factory(shared_engine(settings.db_url.get_secret_value()))
    counts: dict[str, dict[str, Any]] = {}
    with factory() as session:
        for start in range(0, len(flow_run_ids), _PAGE):
            page = flow_run_ids[start : start + _PAGE]
            counts.update(run_counts(session, page))
    return counts


def chunk_reports(
    started: list[FlowRun], latest: dict[UUID, FlowRun], counts: dict[str, dict[str, Any]]
) -> list[ChunkReport]:
    reports = []
    for index, run in enumerate(started, start=1):
        now = latest.get(run.id, run)
        state = now.state
        reports.append(
            ChunkReport(
                index=index,
                flow_run_id=str(run.id),
                flow_run_name=run.name,
                files=len(run.parameters.get("paths") or []),
                state=(state.name or state.type.value) if state else "Unknown",
                final=bool(state and state.is_final()),
                completed=bool(state and state.is_completed()),
                message=state.message if state else None,
                worker=_label(now, WORKER_LABEL),
                counts=counts.get(str(run.id)),
            )
        )
    return reports


def _label(run: FlowRun, key: str) -> str | None:
    value = (run.labels or {}).get(key)
    return None if value is None else str(value)


@flow(name="docextract-fanout", log_prints=False, validate_parameters=True)
def fanout_flow(
    inbox: list[str],
    deployment: str,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    overrides: dict[str, Any] | None = None,
    kind: str = "run",
    redo: list[str] | None = None,
    wait: bool = True,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> State[Any]:
    """Start one run of `deployment` ("flow/deployment", an `extract_flow` on a work pool) per
    `chunk_size` files under `inbox`, and (with `wait`) wait up to `timeout_s` for them. Each
    chunk runs with `overrides` merged over the deployment's own (its model, schemas...).

    Ends Completed with the report (FanoutReport.to_json()) as its result, or Failed with the
    same report when a chunk failed, crashed, did not finish in time, or recorded nothing in
    this flow's database. Raises ConfigError for a bad inbox, chunk size, deployment or
    database (SQLite, or secret overrides) before any chunk starts.
    """
    # The chunk runs start with the parameters given here, which replace the deployment's:
    # merged over them, so a run never runs another model than the one deployed.
    overrides = merge_overrides(deployed_overrides(deployment), dict(overrides or {}))
    settings = build_settings(overrides)
    url = require_shared_database(settings)
    shared_engine(url)  # the schema exists (or is created once) before the chunks race for it
    files = discover([Path(p) for p in inbox], skip=settings.inbox_skip)
    chunks = chunked(files, chunk_size)
    parent = current_flow_run.get_id()
    key = str(parent or f"local-{time.time_ns()}")
    parameters = {"overrides": overrides, "kind": kind, "redo": list(redo or [])}
    started = start_chunks(deployment, chunks, parameters, key)
    logger = get_run_logger()
    logger.info(
        "started %d chunk run(s) of %r for %d file(s)", len(started), deployment, len(files)
    )
    ids = [r.id for r in started]
    latest = wait_for(ids, timeout_s) if wait else {}
    counts = recorded_counts(settings, [str(i) for i in ids]) if wait else {}
    report = FanoutReport(
        deployment, safe_url(url), len(files), parent, chunk_reports(started, latest, counts), wait
    )
    for line in report.problems:
        logger.error(line)
    if report.problems:
        return Failed(message="; ".join(report.problems), data=report.to_json())
    done = "completed" if wait else "started"
    return Completed(message=f"{len(started)} chunk run(s) {done}", data=report.to_json())
