"""Operations commands: rerun, export, serve. Prefect is imported only where a flow runs, and
the rest of the pipeline only inside the command that uses it (start-up time)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from pipeline.cli.common import (
    DbOption,
    JsonOption,
    WorkersOption,
    app,
    build_settings,
    check_names,
    cli_overrides,
    collector_paused,
    console,
    err_console,
    exits_cleanly,
    schema_or_default,
)
from pipeline.cli.server import connect_prefect
from pipeline.errors import ConfigError
from pipeline.settings import MODEL_ALIASES, Settings

StatusOption = Annotated[
    list[str] | None,
    typer.Option(
        "--status",
        help="failed, needs_review, partial, succeeded, pending, approved, corrected or "
        "rejected; repeat for several.",
        show_default=False,
    ),
]
SchemaOption = Annotated[str | None, typer.Option("--schema", help="Only this schema.")]
SinceOption = Annotated[
    str | None,
    typer.Option(help="Results recorded since: 2026-11-27, 2026-11-27T02:00, or 36h / 7d ago."),
]
UntilOption = Annotated[str | None, typer.Option(help="Results recorded before (same forms).")]
DocOption = Annotated[
    list[str] | None,
    typer.Option("--doc", help="sha256 prefix (6+ hex digits) or file name; repeatable."),
]


@app.command()
@exits_cleanly
def rerun(
    status: StatusOption = None,
    error_category: Annotated[
        list[str] | None,
        typer.Option("--error-category", help="e.g. model_error, render_timeout; repeatable."),
    ] = None,
    doc: DocOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    schema: SchemaOption = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Only extractions made by this model (alias, id or id prefix); the "
            "rerun uses it. Default: the configured model."
        ),
    ] = None,
    backend: Annotated[str | None, typer.Option(help="Backend name.")] = None,
    db: DbOption = None,
    workers: WorkersOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List, change nothing.")] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Replace records that reviewers approved, corrected or rejected."
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Rerun exactly the selected extractions (default: --status failed) through the Prefect
    flow. A successful rerun replaces the current result; the history keeps the old one. A
    reviewed record (approved, corrected, rejected) stands unless --force: the attempt is kept
    in the history, beside it in the review desk."""
    from pipeline.reruns import plan_rerun, rerun_overrides, selection_from
    from pipeline.store.db import open_database, session_factory

    overrides = cli_overrides(backend=backend, workers=workers)
    settings = build_settings(db, **rerun_overrides(overrides, model))
    selection = selection_from(status, error_category, doc, since, until, schema, model)
    url = settings.db_url.get_secret_value()
    factory = session_factory(open_database(url, create=False))
    if dry_run:
        with factory() as session:
            plan = plan_rerun(session, selection, settings)
        _print_plan(plan.to_json(), as_json)
        return
    check_names(settings)  # a mistyped --model stops here, before any row is claimed
    parameters = {
        "statuses": status,
        "error_categories": error_category,
        "documents": doc,
        "since": since,
        "until": until,
        "schema_name": schema,
        "model": model,
        "overrides": overrides,
        "force": force,
    }
    _print_rerun(_run_rerun_flow(url, settings, parameters, as_json), as_json)


def _run_rerun_flow(
    url: str, settings: Settings, parameters: dict[str, Any], as_json: bool
) -> dict[str, Any]:
    os.environ["DOCEXTRACT_DB_URL"] = url  # the flow reads it from the environment, not params

    with collector_paused():
        connect_prefect(settings)
        from flows.rerun import run_rerun
    from pipeline.cli.output import progress_bar

    with progress_bar(console, enabled=not as_json):
        return run_rerun(parameters, settings)


def _print_plan(plan: dict[str, Any], as_json: bool) -> None:
    from pipeline.cli.output import add_columns, fit_reason, local_time

    if as_json:
        print(json.dumps(plan, indent=2, default=str))
        return
    table = Table(title=f"rerun plan: {len(plan['units'])} extraction(s)")
    add_columns(table, ("document", "sha256", "schema", "model", "status", "reason", "updated"))
    for u in plan["units"]:
        table.add_row(
            u["name"],
            u["sha256"][:12],
            u["schema_name"],
            u["model_id"],
            u["status"],
            u["reason"] or "",
            local_time(u["updated_at"]),
        )
    console.print(fit_reason(table, console))
    _print_skipped(plan["skipped"])


def _print_skipped(skipped: list[dict[str, Any]]) -> None:
    for u in skipped:
        err_console.print(
            f"[yellow]skipped[/] {u['name'] or u['sha256'][:12]} ({u['schema_name']}, "
            f"{u['status']}): {u['skip_reason']}"
        )


def _print_rerun(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2, default=str))
        return
    from pipeline.cli.output import print_outcomes
    from pipeline.runner import Outcome

    print_outcomes(console, [Outcome(**row) for row in result["outcomes"]], title="rerun")
    _print_skipped(result["plan"]["skipped"])


@app.command("export")
@exits_cleanly
def export_command(
    out: Annotated[
        Path,
        typer.Option("--out", help="File to write (CSV adds <stem>.<list>.csv; truth: a folder)."),
    ],
    fmt: Annotated[
        str, typer.Option("--format", help="jsonl, csv, parquet or truth (eval's ground truth).")
    ] = "jsonl",
    status: StatusOption = None,
    schema: SchemaOption = None,
    model: Annotated[str | None, typer.Option(help="Model alias, id or id prefix.")] = None,
    doc: DocOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    db: DbOption = None,
) -> None:
    """Write current records, one row each with provenance columns (default: --status
    succeeded), for an ERP import. `--format truth` writes reviewed records (default: --status
    approved --status corrected) as ground truth that `docextract eval DIR` reads."""
    from pipeline.export import export
    from pipeline.reruns import selection_from
    from pipeline.store.db import open_database, session_factory

    settings = build_settings(db)
    default = ["approved", "corrected"] if fmt == "truth" else ["succeeded"]
    selection = selection_from(status or default, None, doc, since, until, schema, model)
    factory = session_factory(open_database(settings.db_url.get_secret_value(), create=False))
    with factory() as session:
        result = export(session, selection, fmt, out)
    files = ", ".join(str(f) for f in result.files)
    console.print(f"exported {result.rows} record(s) to {files}")


@app.command()
@exits_cleanly
def forget(
    model: Annotated[
        str,
        typer.Option(help="Exactly this model id or alias (what `status` shows in 'model')."),
    ],
    schema: SchemaOption = None,
    status: StatusOption = None,
    db: DbOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count, remove nothing.")] = False,
) -> None:
    """Remove the extractions a mistaken run left (a mistyped --model), with their history.
    Documents stay; running claims are never touched."""
    from pipeline.reruns import selection_from
    from pipeline.store.db import open_database, session_factory
    from pipeline.store.repository import forget_extractions

    settings = build_settings(db)
    selection = selection_from(status, None, None, None, None, schema, model)  # checks names
    factory = session_factory(open_database(settings.db_url.get_secret_value(), create=False))
    with factory.begin() as session:
        forgotten = forget_extractions(
            session,
            MODEL_ALIASES.get(model, model),
            schema=selection.schema,
            statuses=list(status or ()),
            dry_run=dry_run,
        )
    verb = "would remove" if dry_run else "removed"
    console.print(f"{verb} {forgotten.extractions} extraction(s) and their history")
    for (model_id, schema_name, state), count in sorted(forgotten.groups.items()):
        console.print(f"  {count} {state} {schema_name} by {model_id}", markup=False)


@app.command()
@exits_cleanly
def serve(
    inbox: Annotated[Path, typer.Option(help="Folder the nightly run extracts (recursed).")],
    cron: Annotated[str, typer.Option(help="When the nightly run starts.")] = "0 2 * * *",
    timezone: Annotated[
        str | None, typer.Option(help="IANA time zone of --cron (default: this machine's).")
    ] = None,
    schema: Annotated[str | None, typer.Option(help="Schema name(s), comma-separated.")] = None,
    model: Annotated[str | None, typer.Option(help="Model alias, folder or hub id.")] = None,
    backend: Annotated[str | None, typer.Option(help="Backend name.")] = None,
    workers: WorkersOption = None,
    db: DbOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the deployments, serve nothing.")
    ] = False,
) -> None:
    """Serve the nightly deployment (cron) and the on-demand rerun deployment until stopped."""
    from pipeline.store.db import open_database

    if not inbox.is_dir():
        raise ConfigError(f"--inbox {str(inbox)!r} is not a folder")
    overrides = cli_overrides(
        schema=schema_or_default(schema), model=model, backend=backend, workers=workers
    )
    settings = build_settings(db, **overrides)
    check_names(settings, connect=False)  # unknown names fail here, not at 02:00
    url = settings.db_url.get_secret_value()
    open_database(url)  # a broken database stops here, not at 02:00
    os.environ["DOCEXTRACT_DB_URL"] = url  # flow runs inherit it; never a parameter
    from flows.prefect_env import apply_quiet_defaults

    apply_quiet_defaults()
    from flows.deploy import (
        describe,
        local_timezone,
        nightly_deployment,
        rerun_deployment,
        serve_deployments,
    )

    zone = timezone or local_timezone()
    deployments = [nightly_deployment(inbox, cron, zone, overrides), rerun_deployment(overrides)]
    if dry_run:
        print(json.dumps([describe(d) for d in deployments], indent=2))
        return

    if connect_prefect(settings).kind == "ephemeral":
        # A temporary server would take the schedule and the UI with it when this stops.
        raise ConfigError(
            "serve needs a Prefect server that outlives it: the local background one "
            "(DOCEXTRACT_PREFECT__SERVER=background, the default) or yours (`prefect server "
            "start`) with PREFECT_API_URL=http://HOST:4200/api"
        )
    serve_deployments(deployments, settings.workers)
