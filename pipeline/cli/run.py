"""The everyday commands: `run`, `status`, `show`, `db upgrade`.

Exit codes: 0 the run worked (documents that failed are data, listed in the summary);
2 a configuration error; 3 the database is unreachable or out of date; 1 anything else.
Prefect is imported only by the commands that run flows, and the store and the pipeline only
inside the commands (start-up time).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.common import (
    DbOption,
    JsonOption,
    PerturbOption,
    WorkersOption,
    app,
    build_settings,
    check_names,
    cli_overrides,
    collector_paused,
    console,
    db_app,
    err_console,
    exits_cleanly,
    schema_or_default,
)
from pipeline.cli.server import connect_prefect
from pipeline.errors import ConfigError, StoreError


@app.command()
@exits_cleanly
def run(
    paths: Annotated[list[Path], typer.Argument(help="Files and folders (recursed) to extract.")],
    schema: Annotated[
        str | None,
        typer.Option(
            help="Schema name(s), comma-separated: auto (default: each document routed), "
            "invoice, form, table, chart, a custom module:Model or schema.json."
        ),
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
    split: Annotated[
        str | None,
        typer.Option(
            help="auto (default): a file holding several documents (a scanned stack) becomes "
            "one document per page range; never: each file is one document."
        ),
    ] = None,
    db: DbOption = None,
    workers: WorkersOption = None,
    perturb: PerturbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Extract every document under PATHS through the Prefect flow, then print a summary."""
    from pipeline.cli.output import print_outcomes, progress_bar
    from pipeline.store.db import open_database

    overrides = cli_overrides(
        schema=schema_or_default(schema),
        model=model,
        backend=backend,
        base_url=base_url,
        workers=workers,
        tiling=tiling,
        passwords=passwords,
        perturb=perturb,
        split=split,
    )
    settings = build_settings(db, **overrides)
    check_names(settings)
    url = settings.db_url.get_secret_value()
    open_database(url)  # a broken database stops the run here, before any work
    os.environ["DOCEXTRACT_DB_URL"] = url  # the flow reads it from the environment, not params

    with collector_paused():
        connect_prefect(settings)
        from flows.extract import run_extraction

    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise ConfigError(f"no such file or folder: {', '.join(map(repr, missing))}")
    with progress_bar(console, enabled=not as_json):
        outcomes = run_extraction([str(p) for p in paths], overrides, settings)
    print_outcomes(console, outcomes, as_json=as_json)


@app.command()
@exits_cleanly
def status(
    db: DbOption = None,
    limit: Annotated[int, typer.Option(help="Latest rows.")] = 20,
    runs: Annotated[int, typer.Option(help="Recent runs to report pages/hour for.")] = 5,
    as_json: JsonOption = False,
) -> None:
    """Counts per status, pages per hour and tokens per page of recent runs, latest results."""
    from pipeline.cli.output import print_status
    from pipeline.store import repository as repo
    from pipeline.store.db import EmptyDatabase, open_database, session_factory
    from pipeline.store.queries import recent_run_metrics

    settings = build_settings(db)
    try:
        engine = open_database(settings.db_url.get_secret_value(), create=False)
    except EmptyDatabase as exc:  # a state, not a failure: nothing has run against it yet
        console.print(str(exc), markup=False)
        return
    factory = session_factory(engine)
    with factory() as session:
        counts = repo.status_counts(session)
        latest = repo.latest_extractions(session, limit)
        metrics = recent_run_metrics(session, runs)
        errors = repo.error_counts(session)
        print_status(console, counts, latest, as_json=as_json, runs=metrics, errors=errors)


@app.command()
@exits_cleanly
def show(
    doc: Annotated[str, typer.Argument(help="sha256 prefix (6+ characters) or file name.")],
    db: DbOption = None,
    raw: Annotated[bool, typer.Option(help="Include the raw model outputs.")] = False,
    evidence: Annotated[
        bool,
        typer.Option(
            help="Print a table per record instead: each field's value, confidence, page, box "
            "(page pixels), match kind and review reasons."
        ),
    ] = False,
) -> None:
    """Print a document's stored records as JSON, with their evidence, provenance and history."""
    from pipeline.cli.output import document_json, print_evidence
    from pipeline.store import repository as repo
    from pipeline.store.db import open_database, session_factory

    settings = build_settings(db)
    factory = session_factory(open_database(settings.db_url.get_secret_value(), create=False))
    with factory() as session:
        documents = repo.find_documents(session, doc)
        if not documents:
            short = len(doc) < 6 and all(c in "0123456789abcdefABCDEF" for c in doc)
            hint = "; a sha256 prefix needs at least 6 characters" if short else ""
            err_console.print(
                f"no document matches {doc!r}{hint}; `docextract status` lists them",
                markup=False,
            )
            raise typer.Exit(1)
        if len(documents) > 1:
            names = ", ".join(d.sha256[:12] for d in documents)
            err_console.print(
                f"{doc!r} matches {len(documents)} documents ({names}); be more precise"
            )
            raise typer.Exit(1)
        if evidence:
            print_evidence(console, documents[0])
            return
        print(json.dumps(document_json(documents[0], raw=raw), indent=2, ensure_ascii=False))


@db_app.command("upgrade")
@exits_cleanly
def db_upgrade(db: DbOption = None) -> None:
    """Create the schema in an empty database or upgrade it to this version."""
    from sqlalchemy.exc import SQLAlchemyError

    from pipeline.store.db import make_engine, safe_url, upgrade

    settings = build_settings(db)
    url = settings.db_url.get_secret_value()
    try:
        before, after = upgrade(make_engine(url))
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot upgrade {safe_url(url)!r}: {exc}") from None
    console.print(f"{safe_url(url)}: schema revision {before or 'none'} -> {after}")
