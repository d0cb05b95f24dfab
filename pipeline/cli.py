"""The `docextract` command line.

Exit codes: 0 the run worked (documents that failed are data, listed in the summary);
2 a configuration error; 3 the database is unreachable or out of date; 1 anything else.
Prefect is imported only by the commands that run flows.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from sqlalchemy.exc import SQLAlchemyError

from pipeline.errors import ConfigError, StoreError
from pipeline.settings import Settings
from pipeline.store.db import open_database, safe_url, session_factory

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Extract validated records from business documents with LLaVA-NeXT.",
)
db_app = typer.Typer(no_args_is_help=True, help="Database schema commands.")
app.add_typer(db_app, name="db")
# Tables stay readable when the output goes to a file or CI log (rich assumes 80 columns there).
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="SQLAlchemy URL (default: DOCEXTRACT_DB_URL or sqlite:///docextract.db).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def exits_cleanly(command: F) -> F:
    """Map the error tree onto exit codes with a one-line message that says what to do."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ConfigError as exc:
            err_console.print(f"[bold red]configuration error:[/] {exc}")
            raise typer.Exit(2) from None
        except StoreError as exc:
            err_console.print(f"[bold red]database error:[/] {exc}")
            raise typer.Exit(3) from None

    return wrapper  # type: ignore[return-value]


def build_settings(db: str | None = None, **overrides: Any) -> Settings:
    """Settings from the environment, with command-line values on top."""
    values = {k: v for k, v in overrides.items() if v is not None}
    if db:
        values["db_url"] = db
    try:
        return Settings(**values)
    except ValueError as exc:
        raise ConfigError(f"invalid setting: {exc}") from None


@app.command()
@exits_cleanly
def run(
    paths: Annotated[list[Path], typer.Argument(help="Files and folders (recursed) to extract.")],
    schema: Annotated[
        str | None,
        typer.Option(help="Schema name(s), comma-separated: invoice, or a custom module:Model."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="llava-next-7b (default), llava-next-13b, llava-next-34b, tiny-random, a folder "
            "or a hub id."
        ),
    ] = None,
    backend: Annotated[
        str | None, typer.Option(help="Backend name (default: from the model).")
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(
            help="OpenAI-compatible server (vLLM) to send the model's work to, e.g. "
            "http://gpu1:8000/v1; implies --backend openai."
        ),
    ] = None,
    tiling: Annotated[
        str | None,
        typer.Option(
            help="How pages are cut for the model: auto (default; tiles sized so small print "
            "stays legible), grid, or anyres (the whole page)."
        ),
    ] = None,
    passwords: Annotated[
        Path | None,
        typer.Option(
            help='JSON file of PDF passwords: {"file.pdf": "pw", "<sha256>": "pw", "*": ["pw"]}. '
            "Never logged or stored."
        ),
    ] = None,
    db: DbOption = None,
    workers: Annotated[int | None, typer.Option(help="Documents in flight at once.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Extract every document under PATHS through the Prefect flow, then print a summary."""
    from pipeline.cli_output import print_outcomes, progress_bar

    overrides: dict[str, Any] = {}
    if schema:
        overrides["schemas"] = [s.strip() for s in schema.split(",") if s.strip()]
    if base_url and not backend:
        backend = "openai"  # a server given without a backend can only mean this one
    if model or backend or base_url:
        chosen = {"name": model, "backend": backend, "base_url": base_url}
        overrides["model"] = {k: v for k, v in chosen.items() if v}
    if workers:
        overrides["workers"] = workers
    if passwords:
        from pipeline.passwords import load_passwords

        load_passwords(passwords)  # a missing or malformed file stops the run before any work
        overrides["passwords_file"] = str(passwords.resolve())  # a path, not the secrets
    if tiling:
        from pipeline.tiling import check_strategy

        overrides["tiling"] = {"strategy": check_strategy(tiling)}
    settings = build_settings(db, **overrides)
    _check_names(settings)
    url = settings.db_url.get_secret_value()
    open_database(url)  # a broken database stops the run here, before any work
    os.environ["DOCEXTRACT_DB_URL"] = url  # the flow reads it from the environment, not params
    from flows.prefect_env import apply_quiet_defaults

    apply_quiet_defaults()
    from flows.extract import run_extraction

    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise ConfigError(f"no such file or folder: {', '.join(map(repr, missing))}")
    with progress_bar(console, enabled=not as_json):
        outcomes = run_extraction([str(p) for p in paths], overrides, settings)
    print_outcomes(console, outcomes, as_json=as_json)


def _check_names(settings: Settings) -> None:
    from pipeline.backends import create_model
    from pipeline.routing import AUTO
    from schemas import get_schema

    names = list(settings.schemas)
    if AUTO in names:
        names += settings.routing.candidates
    for name in names:
        if name != AUTO:
            get_schema(name)
    model = create_model(settings)  # unknown backend or model names fail here, before any work
    if getattr(model, "batches_itself", False):
        model.load()  # a remote server that is down, or lacks the model, stops the run now


@app.command()
@exits_cleanly
def status(
    db: DbOption = None,
    limit: Annotated[int, typer.Option(help="Latest rows.")] = 20,
    runs: Annotated[int, typer.Option(help="Recent runs to report pages/hour for.")] = 5,
    as_json: JsonOption = False,
) -> None:
    """Counts per status, pages per hour and tokens per page of recent runs, latest results."""
    from pipeline.cli_output import print_status
    from pipeline.store import repository as repo
    from pipeline.store.queries import recent_run_metrics

    settings = build_settings(db)
    factory = session_factory(open_database(settings.db_url.get_secret_value(), create=False))
    with factory() as session:
        counts = repo.status_counts(session)
        latest = repo.latest_extractions(session, limit)
        metrics = recent_run_metrics(session, runs)
        print_status(console, counts, latest, as_json=as_json, runs=metrics)


@app.command()
@exits_cleanly
def show(
    doc: Annotated[str, typer.Argument(help="sha256 prefix (6+ characters) or file name.")],
    db: DbOption = None,
    raw: Annotated[bool, typer.Option(help="Include the raw model outputs.")] = False,
) -> None:
    """Print a document's stored records as JSON, with provenance and history."""
    from pipeline.cli_output import document_json
    from pipeline.store import repository as repo

    settings = build_settings(db)
    factory = session_factory(open_database(settings.db_url.get_secret_value(), create=False))
    with factory() as session:
        documents = repo.find_documents(session, doc)
        if not documents:
            err_console.print(f"no document matches {doc!r}; `docextract status` lists them")
            raise typer.Exit(1)
        if len(documents) > 1:
            names = ", ".join(d.sha256[:12] for d in documents)
            err_console.print(
                f"{doc!r} matches {len(documents)} documents ({names}); be more precise"
            )
            raise typer.Exit(1)
        print(json.dumps(document_json(documents[0], raw=raw), indent=2, ensure_ascii=False))


@db_app.command("upgrade")
@exits_cleanly
def db_upgrade(db: DbOption = None) -> None:
    """Create the schema in an empty database or upgrade it to this version."""
    from pipeline.store.db import make_engine, upgrade

    settings = build_settings(db)
    url = settings.db_url.get_secret_value()
    try:
        before, after = upgrade(make_engine(url))
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot upgrade {safe_url(url)!r}: {exc}") from None
    console.print(f"{safe_url(url)}: schema revision {before or 'none'} -> {after}")


def main() -> None:  # pragma: no cover - console entry point
    sys.exit(app())


# Command groups in their own modules register on `app` when imported.
from pipeline import cli_ops, cli_quality, cli_review, cli_scale, cli_tiles  # noqa: E402, F401
