"""The extraction flow: discover files, then one task per document (register + extract + store).

Parameters are paths and non-secret setting overrides only: the database URL comes from the
environment of whoever runs the flow (DOCEXTRACT_DB_URL), so it never shows in the Prefect UI.
Tasks pass paths and ids; the model lives once per process (`pipeline.backends.get_model`).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any, cast

from prefect import flow, task
from prefect.context import _deployment_id
from prefect.runtime import deployment, flow_run
from prefect.states import Completed, State
from prefect.task_runners import ThreadPoolTaskRunner
from sqlalchemy.exc import OperationalError

from flows.report import outcome_message, outcome_report, publish
from pipeline import progress
from pipeline.backends import get_model
from pipeline.errors import ConfigError, InfrastructureError, InputError, StoreError
from pipeline.inflight import forget_run, one_document
from pipeline.ingest import Skipped, discover_all
from pipeline.runner import Outcome, process, register
from pipeline.settings import Settings
from pipeline.store import repository as repo
from pipeline.store.db import safe_url, session_factory, shared_engine
from pipeline.types import Status

# Settings that must come from the worker's environment: parameters show in the Prefect UI.
SECRET_SETTINGS = {
    ("db_url",): "DOCEXTRACT_DB_URL",
    ("model", "api_key"): "DOCEXTRACT_MODEL__API_KEY",
}


def build_settings(overrides: dict[str, Any] | None) -> Settings:
    """Settings from the environment plus the flow's (non-secret) overrides. Raises
    ConfigError when an override is a secret."""
    overrides = dict(overrides or {})
    for path, variable in SECRET_SETTINGS.items():
        node: Any = overrides
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if node is not None:
            raise ConfigError(
                f"{'.'.join(path)!r} cannot be a flow parameter (parameters show in the Prefect "
                f"UI); set {variable} in the worker's environment."
            )
    return Settings(**overrides)


def deployment_name() -> str | None:
    """The deployment this flow run (or the run it is nested in) came from; None for a run
    started in-process. The engine sets the context's deployment id for every deployment run;
    without one, `runtime.deployment.get_name()` would ask the server to learn there is none."""
    if _deployment_id.get() is None:
        return None
    return deployment.get_name()


def is_infrastructure_fault(state: Any) -> bool:
    """Prefect retry condition: faults of the machine (database, cache disk, I/O) are worth
    another try (the task gave its claims back), nothing else."""
    exc = state.result(raise_on_failure=False)
    return isinstance(exc, OperationalError | OSError | InfrastructureError)


# The one retry policy of every per-document task: infrastructure faults only (a bad document is
# a stored status, never an exception), twice, 10 s apart.
INFRASTRUCTURE_RETRIES: dict[str, Any] = {
    "retries": 2,
    "retry_delay_seconds": 10,
    "retry_condition_fn": lambda task, run, state: is_infrastructure_fault(state),
}


@task(name="extract-document", **INFRASTRUCTURE_RETRIES)
def extract_document(
    path: str, overrides: dict[str, Any], run_id: int, redo: list[str]
) -> list[dict[str, Any]]:
    """Register one file and extract every schema from it. Infrastructure faults (database,
    I/O) are retried by Prefect; a bad document is not an error but a stored status."""
    settings = build_settings(overrides)
    factory = session_factory(shared_engine(settings.db_url.get_secret_value()))
    try:
        registered = register(factory, Path(path), settings)
    except InputError as exc:  # unreadable: no hash, so no row to store the status in
        progress.emit(progress.ProgressEvent("document_done", path=path, status="failed"))
        return [
            Outcome(
                path, "", name, Status.FAILED.value, exc.message, None, 0.0, did_work=False
            ).to_json()
            for name in settings.schemas
        ]
    # The same bytes under another name in this run: wait for the first, then do no work.
    with one_document(registered.document_id, run_id) as first:
        again = [Status(s) for s in redo] if first else []
        outcomes = process(factory, registered, settings, run_id=run_id, redo=again)
    for outcome in outcomes:
        progress.emit(progress.ProgressEvent("document_done", path=path, status=outcome.status))
    return [o.to_json() for o in outcomes]


@flow(name="docextract-extract", log_prints=False, validate_parameters=True)
def extract_flow(
    paths: list[str],
    overrides: dict[str, Any] | None = None,
    kind: str = "run",
    redo: list[str] | None = None,
) -> State[list[dict[str, Any]]]:
    """Extract every document under `paths` (files and folders, recursively).

    Ends Completed, its message the counts (`outcome_message`), with one summary row per
    (document, schema) as its result: what calling the flow returns. Raises
    ConfigError/StoreError for a broken run (bad settings, database unreachable) before any
    document is touched.
    """
    overrides = dict(overrides or {})
    settings = build_settings(overrides)
    url = settings.db_url.get_secret_value()
    factory = session_factory(shared_engine(url))
    found = discover_all(
        [Path(p) for p in paths],
        skip=settings.inbox_skip,
        follow_outside=settings.inbox_follow_outside,
    )
    files = found.files
    progress.emit(progress.ProgressEvent("discovered", total=len(files)))
    with factory.begin() as session:
        run_id = repo.start_run(
            session,
            kind,
            {
                "paths": paths,
                "overrides": overrides,
                "database": safe_url(url),
                "files": len(files),
            },
            flow_run_id=str(flow_run.get_id() or ""),
            deployment=deployment_name(),
        ).id
    model_stats = _model_stats(settings)
    started = time.perf_counter()
    futures = [extract_document.submit(str(f), overrides, run_id, list(redo or [])) for f in files]
    rows = [_skipped_row(item) for item in found.skipped]
    for file, future in zip(files, futures, strict=True):
        rows.extend(_rows_or_failure(str(file), future, settings))
    forget_run(run_id)
    counts = Counter(row["status"] for row in rows)
    with factory.begin() as session:
        repo.finish_run(
            session,
            run_id,
            {
                "documents": len(files),
                "outcomes": dict(counts),
                "did_work": sum(1 for row in rows if row["did_work"]),
                "seconds": round(time.perf_counter() - started, 3),
                **_model_stats_since(settings, model_stats),
            },
        )
    publish(f"{kind}-summary", *outcome_report(f"docextract {kind}", rows))
    return Completed(message=outcome_message(rows), data=rows)


def _skipped_row(item: Skipped) -> dict[str, Any]:
    """A summary row for a path discovery passed over: no document, so nothing is stored."""
    outcome = Outcome(str(item.path), "", "-", "skipped", item.reason, None, 0.0, did_work=False)
    return outcome.to_json()


def _model_stats(settings: Settings) -> dict[str, float]:
    stats = getattr(get_model(settings), "stats", None)
    if stats is None:
        return {}
    return {"model_busy_s": stats.busy_s, "batches": stats.batches, "requests": stats.requests}


def _model_stats_since(settings: Settings, before: dict[str, float]) -> dict[str, float]:
    """This run's share of the process-wide model counters (a served model outlives runs)."""
    after = _model_stats(settings)
    return {key: round(after[key] - before.get(key, 0), 3) for key in after}


def _rows_or_failure(path: str, future: Any, settings: Settings) -> list[dict[str, Any]]:
    """The task's rows; a task that failed for good becomes failed rows, so the batch goes on,
    except for a broken run (configuration, database), which stops the flow."""
    result = future.result(raise_on_failure=False)
    if not isinstance(result, BaseException):
        return result
    if isinstance(result, ConfigError | InfrastructureError):
        raise result
    if isinstance(result, OperationalError):  # lost before any claim (register, plan, claim)
        raise StoreError(f"lost the database connection: {str(result.orig or result)[:200]}")
    message = f"{type(result).__name__}: {result} (the run log has the traceback)"
    return [
        Outcome(path, "", name, Status.FAILED.value, message, None, 0.0, did_work=False).to_json()
        for name in settings.schemas
    ]


def runner_for(settings: Settings) -> ThreadPoolTaskRunner:
    return ThreadPoolTaskRunner(max_workers=settings.workers)


def run_extraction(
    paths: list[str],
    overrides: dict[str, Any],
    settings: Settings,
    *,
    kind: str = "run",
    redo: list[str] | None = None,
) -> list[Outcome]:
    """Run the flow in this process with the configured document concurrency."""
    configured = extract_flow.with_options(task_runner=runner_for(settings))  # type: ignore[arg-type]
    # A flow that returns a state hands its caller the state's result: the rows.
    rows = configured(paths=paths, overrides=overrides, kind=kind, redo=redo or [])
    return [Outcome(**row) for row in cast(list[dict[str, Any]], rows)]
