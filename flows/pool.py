"""Deployments on a Prefect work pool, for many workers on many machines.

Two deployments per pool, both named after the pool:
- `docextract-extract/<pool>`: the chunk deployment, `extract_flow` over the paths it is given;
  the fan-out parent starts one run of it per chunk.
- `docextract-fanout/<pool>` (only with a cron): the parent itself, over a fixed inbox, nightly.

Both use module-path entrypoints (`flows.extract.extract_flow`) and no pull steps: a worker runs
the flow from the docextract package installed on its own machine, so a process work pool needs
no Docker image, no git checkout and no shared code folder; it needs the same docextract version
on every worker (and the model's dependencies, which no code download would bring anyway).
The database URL and other secrets stay in each worker's environment (DOCEXTRACT_DB_URL); the
deployments carry non-secret overrides only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.deployments.runner import RunnerDeployment
from prefect.exceptions import ObjectNotFound
from prefect.schedules import Cron, Schedule
from prefect.types.entrypoint import EntrypointType

from flows.deploy import TAGS, THREAD_POOL_ENV
from flows.extract import build_settings, extract_flow
from flows.fanout import DEFAULT_CHUNK_SIZE, DEFAULT_TIMEOUT_S, fanout_flow
from pipeline.errors import ConfigError

CHUNK_FLOW = "docextract-extract"
FANOUT_FLOW = "docextract-fanout"
POOL_TYPE = "process"


def chunk_deployment_name(pool: str) -> str:
    """The "flow/deployment" name of the chunk deployment on `pool`."""
    return f"{CHUNK_FLOW}/{pool}"


def ensure_pool(pool: str) -> bool:
    """Create the work pool `pool` (type "process") unless it exists. Returns whether it was
    created; an existing pool of another type is kept as it is (its workers need docextract
    installed, e.g. in their image)."""
    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(pool)
            return False
        except ObjectNotFound:
            from prefect.workers.process import ProcessWorker

            # With its job template filled in now, the first workers do not all race to write it.
            template = ProcessWorker.get_default_base_job_template()
            client.create_work_pool(
                WorkPoolCreate(name=pool, type=POOL_TYPE, base_job_template=template)
            )
            return True


def chunk_deployment(pool: str, overrides: dict[str, Any], workers: int) -> RunnerDeployment:
    """`extract_flow` on `pool`, run once per chunk by the fan-out; `workers` documents are in
    flight in each chunk run. Raises ConfigError for secret overrides."""
    build_settings(overrides)  # parameters show in the Prefect UI: no secrets
    deployment = extract_flow.to_deployment(
        pool,
        work_pool_name=pool,
        parameters={"overrides": overrides, "kind": "run"},
        job_variables={"env": {THREAD_POOL_ENV: str(workers)}},
        description=f"Extract the documents of one chunk, on work pool {pool!r} "
        "(started by docextract-fanout).",
        tags=TAGS,
        entrypoint_type=EntrypointType.MODULE_PATH,
    )
    assert isinstance(deployment, RunnerDeployment)  # the sync API returns it, not a coroutine
    return deployment


def fanout_deployment(
    pool: str,
    inbox: Path,
    cron: str,
    timezone: str,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    overrides: dict[str, Any] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> RunnerDeployment:
    """The fan-out parent over `inbox` on `cron` in `timezone`, itself run by a worker of
    `pool` (at most one at a time). `inbox` must be at the same path on every worker. Raises
    ConfigError for a bad cron, time zone or chunk size, or secret overrides."""
    overrides = dict(overrides or {})
    build_settings(overrides)
    if chunk_size < 1:
        raise ConfigError(f"chunk size must be at least 1, got {chunk_size!r}")
    deployment = fanout_flow.to_deployment(
        pool,
        work_pool_name=pool,
        schedule=nightly_schedule(cron, timezone),
        parameters={
            "inbox": [str(inbox.resolve())],
            "deployment": chunk_deployment_name(pool),
            "chunk_size": chunk_size,
            "overrides": overrides,
            "kind": "nightly",
            "timeout_s": timeout_s,
        },
        concurrency_limit=1,
        description=f"Extract every new document in {str(inbox)!r} over work pool {pool!r}, "
        f"{chunk_size} per chunk run, {cron} ({timezone}).",
        tags=TAGS,
        entrypoint_type=EntrypointType.MODULE_PATH,
    )
    assert isinstance(deployment, RunnerDeployment)
    return deployment


def nightly_schedule(cron: str, timezone: str) -> Schedule:
    """A cron schedule. Raises ConfigError for a bad expression or an unknown time zone."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"unknown time zone {timezone!r}; use an IANA name such as 'Europe/Berlin' or 'UTC'"
        ) from None
    try:
        return Cron(cron, timezone=timezone)
    except ValueError as exc:
        raise ConfigError(
            f"invalid cron expression {cron!r} ({exc}); five fields, e.g. '0 2 * * *' for "
            "02:00 every day"
        ) from None


def register(deployments: list[RunnerDeployment]) -> list[str]:
    """Register (create or update) `deployments` with the Prefect API; their full names."""
    for deployment in deployments:
        deployment.apply()
    return [deployment.full_name for deployment in deployments]
