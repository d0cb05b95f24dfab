"""The rerun flow: redo exactly the selected extractions, one task per document.

Parameters are filters and non-secret setting overrides (the database URL comes from the
environment, as for the extraction flow), so a user can start a rerun from the Prefect UI.
`dry_run` returns the listing without touching anything. The selection and the source lookup are
plain functions in `pipeline.reruns`; this module only orchestrates them.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, cast

from prefect import flow, task
from prefect.runtime import flow_run
from prefect.states import Completed, State
from sqlalchemy.orm import Session, sessionmaker

from flows.extract import INFRASTRUCTURE_RETRIES, build_settings, deployment_name, runner_for
from flows.report import outcome_message, outcome_report, plan_message, plan_report, publish
from pipeline import progress
from pipeline.errors import ConfigError, StoreError
from pipeline.reruns import (
    RerunPlan,
    RerunUnit,
    locate,
    plan_rerun,
    rerun_overrides,
    selection_from,
)
from pipeline.runner import Outcome, process
from pipeline.settings import Settings
from pipeline.store import repository as repo
from pipeline.store.db import session_factory, shared_engine
from pipeline.store.queries import Selection
from pipeline.types import Status


@task(name="rerun-document", **INFRASTRUCTURE_RETRIES)
def rerun_document(
    document_id: int,
    units: list[dict[str, Any]],
    overrides: dict[str, Any],
    run_id: int,
    force: bool = False,
) -> list[dict[str, Any]]:
    """Redo the listed units (`RerunUnit.to_json()` rows) of one document, if their status is
    still the listed one. A document whose file is gone (and not in the page cache) is left as
    it is and reported as skipped."""
    schemas = sorted({u.get("schema_ref") or u["schema_name"] for u in units})  # custom: reload
    settings = build_settings({**overrides, "schemas": schemas})
    factory = session_factory(shared_engine(settings.db_url.get_secret_value()))
    found = locate(factory, document_id, settings)
    if isinstance(found, str):
        outcomes = [_unchanged(u, f"skipped: {found}") for u in units]
    else:
        redo = sorted({Status(u["status"]) for u in units})
        outcomes = process(factory, found, settings, run_id=run_id, redo=redo, force=force)
    for outcome in outcomes:
        progress.emit(
            progress.ProgressEvent("document_done", path=outcome.path, status=outcome.status)
        )
    return [o.to_json() for o in outcomes]


def _unchanged(unit: dict[str, Any], reason: str) -> Outcome:
    return Outcome(
        unit["name"],
        unit["sha256"],
        unit["schema_name"],
        unit["status"],
        reason,
        None,
        0.0,
        did_work=False,
    )


@flow(name="docextract-rerun", log_prints=False, validate_parameters=True)
def rerun_flow(
    statuses: list[str] | None = None,
    error_categories: list[str] | None = None,
    documents: list[str] | None = None,
    since: str | None = None,
    until: str | None = None,
    schema_name: str | None = None,
    model: str | None = None,
    overrides: dict[str, Any] | None = None,
    dry_run: bool = False,
    force: bool = False,
) -> State[dict[str, Any]]:
    """Rerun the extractions matching the filters (statuses default to failed). A record a
    reviewer approved, corrected or rejected keeps its decision (the attempt goes into the
    history) unless `force`.

    Ends Completed, its message the counts (`outcome_message`, plus what the plan skipped; a dry
    run: `plan_message`), with {"plan": the listing, "outcomes": one row per redone (document,
    schema)} as its result (what calling the flow returns); with `dry_run`, only the plan.
    Raises ConfigError/StoreError for a broken configuration or database before any document
    is touched.
    """
    overrides = rerun_overrides(overrides, model)
    settings = build_settings(overrides)
    selection = selection_from(
        statuses, error_categories, documents, since, until, schema_name, model
    )
    factory = session_factory(shared_engine(settings.db_url.get_secret_value()))
    with factory() as session:
        plan = plan_rerun(session, selection, settings)
    if dry_run:
        listing = plan.to_json()
        publish("rerun-dry-run", *plan_report("docextract rerun (dry run)", listing))
        message = f"dry run: {plan_message(listing)}"
        return Completed(message=message, data={"plan": listing, "outcomes": []})
    run_id = _start(factory, selection, overrides, plan)
    progress.emit(progress.ProgressEvent("discovered", total=len(plan.by_document())))
    groups = plan.by_document()
    futures = [
        rerun_document.submit(document_id, [u.to_json() for u in units], overrides, run_id, force)
        for document_id, units in groups.items()
    ]
    rows: list[dict[str, Any]] = []
    for units, future in zip(groups.values(), futures, strict=True):
        rows.extend(_rows_or_failure(units, future))
    with factory.begin() as session:
        repo.finish_run(session, run_id, _counts(plan, rows))
    publish("rerun-summary", *outcome_report("docextract rerun", rows))
    message = outcome_message(rows) + (f"; {len(plan.skipped)} skipped" if plan.skipped else "")
    return Completed(message=message, data={"plan": plan.to_json(), "outcomes": rows})


def _start(
    factory: sessionmaker[Session], selection: Selection, overrides: dict[str, Any], plan: RerunPlan
) -> int:
    parameters = {
        "selection": selection.describe(),
        "overrides": overrides,
        "selected": len(plan.units),
        "skipped": len(plan.skipped),
    }
    with factory.begin() as session:
        return repo.start_run(
            session,
            "rerun",
            parameters,
            flow_run_id=str(flow_run.get_id() or "") or None,
            deployment=deployment_name(),
        ).id


def _counts(plan: RerunPlan, rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "documents": len(plan.by_document()),
        "outcomes": dict(Counter(row["status"] for row in rows)),
        "did_work": sum(1 for row in rows if row["did_work"]),
        "skipped_by_plan": len(plan.skipped),
    }


def _rows_or_failure(units: list[RerunUnit], future: Any) -> list[dict[str, Any]]:
    """The task's rows; a task that failed for good becomes failed rows (its units keep their
    stored result), except for a broken run (configuration, database), which stops the flow."""
    result = future.result(raise_on_failure=False)
    if not isinstance(result, BaseException):
        return list(result)
    if isinstance(result, ConfigError | StoreError):
        raise result
    message = f"{type(result).__name__}: {result} (the run log has the traceback)"
    return [
        _unchanged({**u.to_json(), "status": Status.FAILED.value}, message).to_json() for u in units
    ]


def run_rerun(parameters: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """Run the rerun flow in this process with `settings.workers` documents in flight."""
    configured = rerun_flow.with_options(task_runner=runner_for(settings))  # type: ignore[arg-type]
    # A flow that returns a state hands its caller the state's result.
    return cast(dict[str, Any], configured(**parameters))
