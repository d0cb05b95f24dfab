"""Commands about extraction quality: `schemas`, `eval`, `ask`."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from pipeline.cli.common import (
    DbOption,
    JsonOption,
    PerturbOption,
    app,
    build_settings,
    cli_overrides,
    collector_paused,
    console,
    err_console,
    exits_cleanly,
    names_option,
)
from pipeline.cli.review import eval_reviewed
from pipeline.cli.server import connect_prefect
from pipeline.errors import ConfigError, InputError, ModelError
from pipeline.settings import Settings
from schemas import BUILT_INS, get_schema, known_schemas
from schemas.base import ExtractionSchema

if TYPE_CHECKING:
    from pipeline.evaluation import Case, GroundTruth, SchemaReport

SchemaOption = Annotated[
    str | None,
    typer.Option(help="Schema name(s), comma-separated: built-in names, module:Model, x.json."),
]
ModelOption = Annotated[
    str | None, typer.Option(help="Model alias, folder or hub id (default: llava-next-7b).")
]
BackendOption = Annotated[str | None, typer.Option(help="Backend name (default: from the model).")]


@app.command("schemas")
@exits_cleanly
def schemas_command(schema: SchemaOption = None, as_json: JsonOption = False) -> None:
    """List the available schemas with their versions (and custom ones given with --schema)."""
    from pipeline.routing import AUTO

    for name in names_option(schema):
        get_schema(name)  # loads (and registers) a custom schema, or says what is wrong with it
    rows = [
        {
            "name": name,
            "version": s.schema_version,
            "origin": "built-in" if s in BUILT_INS else "custom",
            "fields": len(s.model_fields),
            "summary": s.summary,
        }
        for name, s in known_schemas().items()
    ]
    rows.append(
        {
            "name": AUTO,
            "version": "-",
            "origin": "routing",
            "fields": 0,
            "summary": "the model picks one of DOCEXTRACT_ROUTING__CANDIDATES per document",
        }
    )
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title="schemas")
    for column in ("name", "version", "origin", "fields", "summary"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(str(row[k]) for k in ("name", "version", "origin", "fields", "summary")))
    console.print(table)


@app.command("eval")
@exits_cleanly
def eval_command(
    directory: Annotated[
        Path | None, typer.Argument(help="Folder of documents with NAME.json truth.")
    ] = None,
    schema: SchemaOption = None,
    model: ModelOption = None,
    backend: BackendOption = None,
    perturb: PerturbOption = None,
    db: DbOption = None,
    reviewed: Annotated[
        bool,
        typer.Option(
            "--reviewed",
            help="Instead of a folder: score the model's original records against the ones "
            "reviewers approved or corrected in --db.",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Run the pipeline over DIRECTORY and score it against the ground truth beside each file.

    Without --db the run goes into a temporary SQLite database, so every document is extracted
    afresh; with --db, extractions already stored for this model are reused. With --reviewed,
    nothing runs: the reviewed records in --db are the truth.
    """
    from pipeline.calibration import add_calibration
    from pipeline.evaluation import evaluate, load_ground_truth

    if reviewed:
        eval_reviewed(db, names_option(schema), as_json, _print_report)
        return
    if directory is None:
        raise ConfigError("give a folder of documents with ground truth, or --reviewed")
    if not directory.is_dir():
        raise ConfigError(f"{str(directory)!r} is not a folder of documents with ground truth.")
    truths = load_ground_truth(directory)
    if not truths:
        raise ConfigError(
            f"no ground truth in {str(directory)!r}: put NAME.json beside NAME.pdf, holding "
            '{"records": {"invoice": {...}}} (see the README, "Evaluating").'
        )
    selected = names_option(schema) or list(dict.fromkeys(n for t in truths for n in t.records))
    if "auto" in selected:
        raise ConfigError("eval scores named schemas; give them with --schema instead of auto.")
    # ground truth is one record per file: each file is one document here, never a bundle
    overrides = {
        **cli_overrides(model=model, backend=backend, perturb=perturb),
        "split": {"mode": "never"},
    }
    with _database(db) as url:
        settings = build_settings(url, schemas=selected, **overrides)
        cases = _run_and_collect(truths, selected, overrides, settings, as_json)
    reports = evaluate(cases)
    add_calibration(reports, cases)
    model_id = _model_id(settings)
    if as_json:
        data = {"model": model_id, "directory": str(directory), "documents": len(truths)}
        data["schemas"] = {name: r.to_json() for name, r in reports.items()}
        print(json.dumps(data, indent=2))
    else:
        for report in reports.values():
            _print_report(report, model_id)


@contextmanager
def _database(db: str | None) -> Iterator[str]:
    """The database URL to run in, set in the environment for the flow (never a parameter)."""
    from pipeline.store.db import dispose_engines

    previous = os.environ.get("DOCEXTRACT_DB_URL")
    with tempfile.TemporaryDirectory(prefix="docextract-eval-") as folder:
        url = db or f"sqlite:///{Path(folder) / 'eval.db'}"
        os.environ["DOCEXTRACT_DB_URL"] = url
        try:
            yield url
        finally:
            dispose_engines()  # close the temporary database before its folder goes
            if previous is None:
                os.environ.pop("DOCEXTRACT_DB_URL", None)
            else:
                os.environ["DOCEXTRACT_DB_URL"] = previous


def _run_and_collect(
    truths: Sequence[GroundTruth],
    selected: Sequence[str],
    overrides: dict[str, Any],
    settings: Settings,
    quiet: bool,
) -> list[Case]:
    """Extract each document with the selected schemas it has truth for (one flow run per set
    of schemas), then read each stored record back."""
    from pipeline.backends import create_model
    from pipeline.cli.output import progress_bar
    from pipeline.evaluation import Case
    from pipeline.store.db import open_database, session_factory

    create_model(settings)  # an unknown model or backend fails here, before any work
    url = settings.db_url.get_secret_value()
    factory = session_factory(open_database(url))
    plan: dict[tuple[str, ...], list[GroundTruth]] = {}
    for truth in truths:
        names = tuple(n for n in selected if _truth_record(truth, get_schema(n)) is not None)
        if names:
            plan.setdefault(names, []).append(truth)

    with collector_paused():
        connect_prefect(settings)
        from flows.extract import run_extraction

    outcomes = []
    for names, group in plan.items():  # one bar per flow run: each counts its own documents
        paths = [str(t.document) for t in group]
        with progress_bar(console, enabled=not quiet):
            outcomes += run_extraction(paths, {**overrides, "schemas": list(names)}, settings)
    by_path = {str(t.document): t for t in truths}
    model_id = _model_id(settings)
    cases = []
    with factory() as session:
        for outcome in outcomes:
            schema = get_schema(outcome.schema)
            expected = _truth_record(by_path[outcome.path], schema)
            assert expected is not None  # the plan ran only schemas with truth
            record, evidence = _stored_record(session, outcome.sha256, schema, model_id)
            name = Path(outcome.path).name
            labelled = by_path[outcome.path].labelled_paths(schema)
            cases.append(Case(name, schema, expected, record, outcome.status, labelled, evidence))
    return cases


def _truth_record(truth: GroundTruth, schema: type[ExtractionSchema]) -> dict[str, Any] | None:
    """The truth's record for `schema`, keyed by the name given or the schema's own name."""
    for key, record in truth.records.items():
        if key == schema.schema_name:
            return record
    return next((r for k, r in truth.records.items() if _same_schema(k, schema)), None)


def _same_schema(key: str, schema: type[ExtractionSchema]) -> bool:
    return get_schema(key) is schema


def _stored_record(
    session: Any, sha256: str, schema: type[ExtractionSchema], model_id: str
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The stored record and its per-field evidence (None, None: nothing stored)."""
    from pipeline.prompts import PROMPT_VERSION
    from pipeline.store import repository as repo
    from pipeline.store.queries import document_by_sha256

    document = document_by_sha256(session, sha256)
    if document is None:  # the file could not even be read: no record
        return None, None
    unit = repo.UnitOfWork(
        document.id, schema.schema_name, schema.schema_version, model_id, PROMPT_VERSION
    )
    extraction = repo.current_extraction(session, unit)
    if extraction is None:
        return None, None
    return extraction.record, extraction.field_confidence


def _model_id(settings: Settings) -> str:
    from pipeline.backends import get_model

    return get_model(settings).model_id  # built, not loaded: the id needs no weights


def _print_report(report: SchemaReport, model_id: str) -> None:
    summary = report.summary()
    statuses = ", ".join(f"{n} {s}" for s, n in summary["status"].items())
    console.print(
        f"[bold]{report.schema}[/] v{report.version} with {model_id}: "
        f"{summary['documents']} documents ({statuses}); needs review "
        f"{_pct(summary['needs_review_share'])}, failed {_pct(summary['failed_share'])}; "
        f"mean field exact {_pct(summary['exact'])}, list F1 {_pct(summary['f1'])}"
    )
    table = Table(title=f"{report.schema}: per field")
    for column in ("field", "kind", "n", "exact", "ANLS", "precision", "recall", "F1"):
        table.add_column(column, justify="left" if column in ("field", "kind") else "right")
    for name, score in report.fields.items():
        listed = score.kind not in ("value", "text")
        table.add_row(
            name,
            score.kind,
            str(score.expected if listed else score.count),
            _pct(score.exact),
            _pct(score.anls),
            _pct(score.precision),
            _pct(score.recall),
            _pct(score.f1),
        )
    console.print(table)
    documents = Table(title=f"{report.schema}: per document")
    for column in ("document", "status", "exact", "F1"):
        documents.add_column(column, justify="left" if column != "exact" else "right")
    for row in report.documents:
        documents.add_row(row["document"], row["status"], _pct(row["exact"]), _pct(row["f1"]))
    console.print(documents)
    if report.calibration is not None:
        _print_calibration(report.schema, report.calibration)


def _print_calibration(schema: str, figures: dict[str, Any]) -> None:
    """The reliability table and the calibration figures of one schema."""
    table = Table(title=f"{schema}: confidence vs exact match ({figures['fields']} fields)")
    for column in ("confidence", "fields", "mean confidence", "accuracy"):
        table.add_column(column, justify="left" if column == "confidence" else "right")
    for row in figures["reliability"]:
        if row["count"]:
            table.add_row(
                row["bin"], str(row["count"]), _pct(row["mean_confidence"]), _pct(row["accuracy"])
            )
    console.print(table)
    auroc = figures["auroc"]
    console.print(
        f"{schema}: accuracy {_pct(figures['accuracy'])}, ECE {_pct(figures['ece'])}, AUROC "
        f"{'-' if auroc is None else f'{auroc:.3f}'}, coverage at 99% precision "
        f"{_pct(figures['coverage_at_99_precision'])}"
    )


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


@app.command()
@exits_cleanly
def ask(
    file: Annotated[Path, typer.Argument(help="A PDF or image.")],
    question: Annotated[str, typer.Argument(help='The question, e.g. "What is the total?"')],
    model: ModelOption = None,
    backend: BackendOption = None,
    raw: Annotated[bool, typer.Option(help="Include every page's raw answer.")] = False,
) -> None:
    """Answer one question about a document as JSON: answer, page, box (page pixels)."""
    from pipeline.asking import ask as ask_document
    from pipeline.asking import check_question
    from pipeline.backends import get_model
    from pipeline.ingest import ingest_file
    from pipeline.pages import prepare_raster
    from pipeline.render.raster import rasterize

    if not file.is_file():
        raise ConfigError(f"no such file: {str(file)!r}")
    problem = check_question(question)
    if problem:
        raise ConfigError(problem)
    settings = build_settings(None, **cli_overrides(model=model, backend=backend))
    try:
        raster = prepare_raster(
            rasterize(ingest_file(file, settings.raster), settings.raster, settings.page_cache_dir),
            settings.pages,
        )
        readable = [p for p in raster.pages if not p.blank] or raster.pages
        answer = ask_document(readable, get_model(settings), settings, question)
    except InputError as exc:
        err_console.print(f"[bold red]cannot read {str(file)!r}:[/] {exc.message} ({exc.category})")
        raise typer.Exit(1) from None
    except ModelError as exc:
        err_console.print(f"[bold red]model error:[/] {exc}")
        raise typer.Exit(1) from None
    print(json.dumps(answer.to_json(raw), indent=2, ensure_ascii=False))
