"""`docextract pool ...`: run the extraction over a Prefect work pool with many workers.

`pool deploy` registers the chunk deployment (and, with --cron, the nightly fan-out) on a work
pool; `pool run` splits an inbox into chunks and starts one flow run per chunk on the pool,
then waits and reports. Workers are plain `prefect worker start --pool NAME` processes on any
machine with docextract installed and DOCEXTRACT_DB_URL set. Prefect is imported only here,
inside the commands.
"""

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
    app,
    build_settings,
    check_names,
    cli_overrides,
    console,
    err_console,
    exits_cleanly,
    schema_or_default,
)
from pipeline.errors import ConfigError
from pipeline.settings import Settings

pool_app = typer.Typer(
    no_args_is_help=True,
    help="Many workers: the extraction over a Prefect work pool (one flow run per chunk).",
)
app.add_typer(pool_app, name="pool")

PoolOption = Annotated[str, typer.Option("--pool", help="Prefect work pool name.")]
ChunkOption = Annotated[int, typer.Option(help="Documents per chunk flow run.", min=1)]
SchemaOption = Annotated[str | None, typer.Option(help="Schema name(s), comma-separated.")]
ModelOption = Annotated[str | None, typer.Option(help="Model alias, folder or hub id.")]
BackendOption = Annotated[str | None, typer.Option(help="Backend name.")]
BaseUrlOption = Annotated[
    str | None,
    typer.Option(
        help="OpenAI-compatible server (vLLM) every worker sends its model work to; implies "
        "--backend openai. Unset: each worker's DOCEXTRACT_MODEL__BASE_URL."
    ),
]
WorkersOption = Annotated[
    int | None, typer.Option(help="Documents in flight in each chunk run.", min=1)
]
DEFAULT_CHUNK = 50


def _prepare(db: str | None, overrides: dict[str, Any], workers: int | None) -> Settings:
    """Settings checked for a pool: known names, a shared (PostgreSQL) database at the current
    schema revision, a Prefect server. Exports DOCEXTRACT_DB_URL for the parent flow."""
    from pipeline.store.db import open_database

    settings = build_settings(db, **overrides, workers=workers)
    check_names(settings, connect=False)  # unknown names fail here, not on every worker
    from flows.prefect_env import apply_quiet_defaults

    apply_quiet_defaults()
    _require_server()
    from flows.fanout import require_shared_database

    url = require_shared_database(settings)
    open_database(url)  # created or checked once here, not raced by the first chunk runs
    os.environ["DOCEXTRACT_DB_URL"] = url  # the parent reads it from the environment
    return settings


def _require_server() -> None:
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():  # environment or Prefect profile
        # A temporary server lives in this process: workers elsewhere could never reach it.
        raise ConfigError(
            "a work pool needs a Prefect server that every worker reaches: start one "
            "(`prefect server start --host 0.0.0.0`) and set "
            "PREFECT_API_URL=http://SERVER:4200/api here and on every worker"
        )


@pool_app.command("deploy")
@exits_cleanly
def deploy(
    pool: PoolOption,
    cron: Annotated[
        str | None, typer.Option(help="Also deploy the nightly fan-out on this schedule.")
    ] = None,
    inbox: Annotated[
        Path | None,
        typer.Option(help="Folder the nightly fan-out reads (same path on every worker)."),
    ] = None,
    timezone: Annotated[
        str | None, typer.Option(help="IANA time zone of --cron (default: this machine's).")
    ] = None,
    chunk_size: ChunkOption = DEFAULT_CHUNK,
    schema: SchemaOption = None,
    model: ModelOption = None,
    backend: BackendOption = None,
    base_url: BaseUrlOption = None,
    workers: WorkersOption = None,
    db: DbOption = None,
) -> None:
    """Create the process work pool if missing and register docextract-extract/POOL (one run
    per chunk) and, with --cron and --inbox, the nightly docextract-fanout/POOL."""
    if cron and (inbox is None or not inbox.is_dir()):
        raise ConfigError(f"--cron needs --inbox, an existing folder (got {str(inbox)!r})")
    overrides = cli_overrides(
        schema=schema_or_default(schema), model=model, backend=backend, base_url=base_url
    )
    settings = _prepare(db, overrides, workers)
    from flows.deploy import local_timezone
    from flows.pool import chunk_deployment, ensure_pool, fanout_deployment, register

    deployments = [chunk_deployment(pool, overrides, settings.workers)]
    if cron and inbox is not None:
        zone = timezone or local_timezone()
        deployments.append(
            fanout_deployment(pool, inbox, cron, zone, chunk_size=chunk_size, overrides=overrides)
        )
    created = ensure_pool(pool)
    names = register(deployments)
    console.print(f"work pool {pool!r}: {'created' if created else 'exists'}")
    for name in names:
        console.print(f"registered {name}")
    console.print(f"start workers with: prefect worker start --pool {pool}")


@pool_app.command("run")
@exits_cleanly
def run(
    inbox: Annotated[list[Path], typer.Argument(help="Files and folders (same path on workers).")],
    pool: PoolOption,
    chunk_size: ChunkOption = DEFAULT_CHUNK,
    wait: Annotated[bool, typer.Option(help="Wait for the chunk runs and report them.")] = True,
    timeout: Annotated[
        float, typer.Option(help="Longest wait for the chunk runs, in seconds.", min=0)
    ] = 8 * 3600.0,
    schema: SchemaOption = None,
    model: ModelOption = None,
    backend: BackendOption = None,
    base_url: BaseUrlOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Split INBOX into chunks and start one docextract-extract/POOL run per chunk; workers of
    POOL do them. Exit code 1 when a chunk failed or did not finish within --timeout (its
    documents are picked up by the next run)."""
    missing = [str(p) for p in inbox if not p.exists()]
    if missing:
        raise ConfigError(f"no such file or folder: {', '.join(map(repr, missing))}")
    overrides = cli_overrides(schema=schema, model=model, backend=backend, base_url=base_url)
    _prepare(db, overrides, None)
    from flows.fanout import check_deployment, fanout_flow
    from flows.pool import chunk_deployment_name

    deployment = chunk_deployment_name(pool)
    check_deployment(deployment)
    state = fanout_flow(
        inbox=[str(p.resolve()) for p in inbox],
        deployment=deployment,
        chunk_size=chunk_size,
        overrides=overrides,
        wait=wait,
        timeout_s=timeout,
        return_state=True,
    )
    report: Any = state.result(raise_on_failure=False)
    if isinstance(report, BaseException):  # the parent itself broke (ConfigError, StoreError...)
        raise report
    _print_report(report, as_json)
    if report["problems"]:
        for line in report["problems"]:
            err_console.print(f"[bold red]chunk problem:[/] {line}")
        raise typer.Exit(1)


def _print_report(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(report, indent=2, default=str))
        return
    table = Table(title=f"{report['deployment']}: {report['files']} file(s)")
    columns = ("chunk", "flow run", "files", "state", "worker", "outcomes", "new work", "seconds")
    for column in columns:
        table.add_column(column, overflow="fold")
    for chunk in report["chunks"]:
        counts = chunk["counts"] or {}
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted((counts.get("outcomes") or {}).items()))
        table.add_row(
            str(chunk["index"]),
            chunk["flow_run_name"],
            str(chunk["files"]),
            chunk["state"],
            chunk["worker"] or "",
            outcomes,
            str(counts.get("did_work", "")),
            str(counts.get("seconds", "")),
        )
    console.print(table)
    if not report["waited"]:
        console.print("not waited for: follow the chunk runs in the Prefect UI")
        return
    totals = ", ".join(f"{k} {v}" for k, v in sorted(report["outcomes"].items()))
    console.print(f"outcomes: {totals or 'none recorded'}")
