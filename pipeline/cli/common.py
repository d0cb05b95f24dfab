"""What every command shares: the Typer app, common options, error-to-exit-code mapping, and
the one conversion from command-line options to settings (with the one name check).

Exit codes: 0 the run worked (documents that failed are data, listed in the summary);
2 a configuration error; 3 the database is unreachable, out of date or lost mid-run; 4 another
fault of the machine (the page cache cannot be written); 1 anything else. After 3 or 4 the run
has given its claims back: the next `docextract run` does the work.
Prefect is imported only by the commands that run flows; the backends, schemas and renderer
only when a command checks names or options (start-up time of the commands that do not).
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console

from pipeline.errors import ConfigError, InfrastructureError, StoreError
from pipeline.settings import Settings

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Extract validated records from business documents with LLaVA-NeXT.",
)
db_app = typer.Typer(no_args_is_help=True, help="Database schema commands.")
app.add_typer(db_app, name="db")


def output_width() -> int | None:
    """The width tables are laid out for: the terminal's, or COLUMNS when set (rich reads
    it); 160 when output goes to a file or CI log without COLUMNS (rich would assume 80)."""
    if sys.stdout.isatty() or os.environ.get("COLUMNS", "").strip().isdigit():
        return None
    return 160


console = Console(width=output_width())
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
PerturbOption = Annotated[
    str | None,
    typer.Option(
        help="With --backend scripted-truth: make one must-be-grounded value per record wrong: "
        "digit, swap, foreign, made-up or date."
    ),
]
WorkersOption = Annotated[
    int | None, typer.Option(help="Documents in flight at once (1 or more).", min=1)
]


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
        except InfrastructureError as exc:
            err_console.print(f"[bold red]machine fault:[/] {exc}")
            raise typer.Exit(4) from None

    return wrapper  # type: ignore[return-value]


# True in a process that ends with its one command (`main`: the console script, `python -m
# pipeline`); False in tests (CliRunner) and any caller that lives on, whose garbage must stay
# collectable.
ONE_COMMAND = False


@contextmanager
def collector_paused() -> Iterator[None]:
    """For the block that imports Prefect and a flow (and the pipeline behind it): in a
    one-command process what those imports build lives until exit, so the cycle collector's
    passes over it are wasted work (0.2-0.3 s of a no-op run). Paused meanwhile; afterwards
    it skips all of it (frozen). Elsewhere a no-op."""
    if not ONE_COMMAND:
        yield
        return
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def one_document(session: Any, reference: str) -> Any:
    """The one stored Document that `reference` (sha256 prefix or file name) names; else the
    command ends (exit 1) saying none or how many match."""
    from pipeline.store import repository as repo

    found = repo.find_documents(session, reference)
    if len(found) != 1:
        what = "no document" if not found else f"{len(found)} documents"
        err_console.print(
            f"{what} match {reference!r}; `docextract status` lists them", markup=False
        )
        raise typer.Exit(1)
    return found[0]


def build_settings(db: str | None = None, **overrides: Any) -> Settings:
    """Settings from the environment, with command-line values on top."""
    values = {k: v for k, v in overrides.items() if v is not None}
    if db:
        values["db_url"] = db
    try:
        return Settings(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"invalid setting: {problems}") from None
    except ValueError as exc:
        raise ConfigError(f"invalid setting: {exc}") from None


def schema_or_default(schema: str | None) -> str | None:
    """`--schema` as given; without it (and without DOCEXTRACT_SCHEMAS) `auto`, so that a mixed
    inbox is not read as invoices: each document is routed to invoice, form, table or chart."""
    from pipeline.routing import AUTO

    if schema or os.environ.get("DOCEXTRACT_SCHEMAS"):
        return schema
    return AUTO


def names_option(value: str | None) -> list[str]:
    """A comma-separated option ("invoice, form") as a list of names."""
    return [s.strip() for s in (value or "").split(",") if s.strip()]


def cli_overrides(
    *,
    schema: str | None = None,
    model: str | None = None,
    backend: str | None = None,
    base_url: str | None = None,
    workers: int | None = None,
    tiling: str | None = None,
    global_view: bool | None = None,
    dpi: int | None = None,
    passwords: Path | None = None,
    perturb: str | None = None,
    split: str | None = None,
) -> dict[str, Any]:
    """The settings overrides that command-line options stand for, for every command.

    These are non-secret values: they travel as flow parameters and show in Prefect's UI. A
    passwords file is checked here (a missing or malformed one stops the command before any
    work) and passed on as its path, never its contents.
    """
    from pipeline.render.passwords import load_passwords
    from pipeline.tiling import check_strategy

    overrides: dict[str, Any] = {}
    if schema:
        overrides["schemas"] = names_option(schema)
    if base_url and not backend:
        backend = "openai"  # a server given without a backend can only mean this one
    chosen = {"name": model, "backend": backend, "base_url": base_url, "perturb": perturb}
    if any(chosen.values()):
        overrides["model"] = {k: v for k, v in chosen.items() if v}
    if workers is not None:
        overrides["workers"] = workers
    if passwords:
        load_passwords(passwords)
        overrides["passwords_file"] = str(passwords.resolve())
    chosen_tiling = {"strategy": tiling and check_strategy(tiling), "global_view": global_view}
    if any(v is not None for v in chosen_tiling.values()):
        overrides["tiling"] = {k: v for k, v in chosen_tiling.items() if v is not None}
    if dpi:
        overrides["raster"] = {"dpi": dpi}
    if split:
        if split not in ("auto", "never"):
            raise ConfigError(f"--split {split!r}: choose auto or never")
        overrides["split"] = {"mode": split}
    return overrides


def check_names(settings: Settings, *, connect: bool = True) -> None:
    """Fail at once on an unknown schema, backend or model name (`auto` is a schema choice, its
    candidates are checked); with `connect`, a model server that is down stops the command too."""
    from pipeline.backends import create_model
    from pipeline.render.words import check_ocr
    from pipeline.routing import AUTO
    from schemas import get_schema

    names = list(settings.schemas)
    if AUTO in names:
        names += settings.routing.candidates
    for name in names:
        if name != AUTO:
            get_schema(name)
    check_ocr(settings)  # OCR forced without Tesseract
    model = create_model(settings)  # unknown backend or model names fail here, before any work
    if not connect:
        return
    preflight = getattr(model, "preflight", None)
    if preflight is not None:
        preflight()  # a checkpoint that cannot be had here (offline, not cached) stops it now
    if getattr(model, "batches_itself", False):
        model.load()  # a remote server that is down, or lacks the model, stops the run now
