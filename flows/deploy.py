"""Deployments: the nightly extraction on a cron schedule, and reruns on demand.

`docextract serve` builds both and serves them from its own process (`prefect.serve`): the
Prefect UI lists the runs of each, and a user can start a rerun there with the rerun flow's
filters as parameters. Flow runs execute in subprocesses of the serving process and inherit its
environment, which is where the database URL lives (never in a parameter).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron
from prefect.types.entrypoint import EntrypointType

from flows.extract import build_settings, extract_flow
from flows.rerun import rerun_flow
from pipeline.errors import ConfigError

NIGHTLY = "nightly"
RERUN = "rerun"
TAGS = ["docextract"]
# Thread pool size of the task runner in served flow runs (documents in flight per run).
THREAD_POOL_ENV = "PREFECT_TASK_RUNNER_THREAD_POOL_MAX_WORKERS"


def local_timezone() -> str:
    """The machine's IANA time zone name (TZ, then /etc/localtime), or "UTC"."""
    candidates = [os.environ.get("TZ", "").lstrip(":")]
    localtime = Path("/etc/localtime")
    if localtime.is_symlink():
        candidates.append(str(localtime.resolve()).partition("zoneinfo/")[2])
    for name in candidates:
        if name and _is_zone(name):
            return name
    return "UTC"


def _is_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def nightly_deployment(
    inbox: Path, cron: str, timezone: str, overrides: dict[str, Any]
) -> RunnerDeployment:
    """The extraction flow over `inbox` on `cron` in `timezone` (at most one run at a time).

    Raises ConfigError for a bad cron expression, an unknown time zone, or secret overrides.
    """
    _check_overrides(overrides)
    if not _is_zone(timezone):
        raise ConfigError(
            f"unknown time zone {timezone!r}; use an IANA name such as 'Europe/Berlin' or 'UTC'"
        )
    try:
        schedule = Cron(cron, timezone=timezone)
    except ValueError as exc:
        raise ConfigError(
            f"invalid cron expression {cron!r} ({exc}); five fields, e.g. '0 2 * * *' for "
            "02:00 every day"
        ) from None
    deployment = extract_flow.to_deployment(
        NIGHTLY,
        schedule=schedule,
        parameters={"paths": [str(inbox.resolve())], "overrides": overrides, "kind": NIGHTLY},
        concurrency_limit=1,
        description=f"Extract every new document in {str(inbox)!r}, {cron} ({timezone}).",
        tags=TAGS,
        entrypoint_type=EntrypointType.MODULE_PATH,
    )
    assert isinstance(deployment, RunnerDeployment)  # the sync API returns it, not a coroutine
    return deployment


def rerun_deployment(overrides: dict[str, Any]) -> RunnerDeployment:
    """The rerun flow, run on demand (no schedule): defaults rerun every failed extraction;
    set `dry_run` to list them, or any filter, when starting it from the UI."""
    _check_overrides(overrides)
    deployment = rerun_flow.to_deployment(
        RERUN,
        parameters={"statuses": ["failed"], "overrides": overrides, "dry_run": False},
        description="Rerun the selected extractions (status, error category, document, dates, "
        "schema, model). Start with dry_run=true to see the list.",
        tags=TAGS,
        entrypoint_type=EntrypointType.MODULE_PATH,
    )
    assert isinstance(deployment, RunnerDeployment)  # the sync API returns it, not a coroutine
    return deployment


def _check_overrides(overrides: dict[str, Any]) -> None:
    """Deployment parameters show in the Prefect UI: no secrets (raises ConfigError)."""
    build_settings(overrides)


def serve_deployments(deployments: list[RunnerDeployment], workers: int) -> None:
    """Register `deployments` with the Prefect API and run their flow runs until interrupted.

    `workers` documents are in flight at once in each flow run (an explicitly set
    PREFECT_TASK_RUNNER_THREAD_POOL_MAX_WORKERS wins).
    """
    from prefect import serve

    os.environ.setdefault(THREAD_POOL_ENV, str(workers))
    serve(*deployments, print_starting_message=True)


def describe(deployment: RunnerDeployment) -> dict[str, Any]:
    """What a deployment will do, for `serve --dry-run` and logs."""
    schedules = [
        {
            "cron": getattr(s.schedule, "cron", None),
            "timezone": getattr(s.schedule, "timezone", None),
        }
        for s in deployment.schedules or []
    ]
    return {
        "name": f"{deployment.flow_name}/{deployment.name}",
        "entrypoint": deployment.entrypoint,
        "schedules": schedules,
        "parameters": deployment.parameters,
        "concurrency_limit": deployment.concurrency_limit,
    }
