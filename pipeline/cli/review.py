"""Review commands: `review` (the desk, a web application) and `report` (the night's report)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pipeline.cli.common import DbOption, app, build_settings, console, exits_cleanly
from pipeline.errors import ConfigError


@app.command()
@exits_cleanly
def review(
    host: Annotated[
        str, typer.Option(help="Address to bind; anything but loopback needs a token.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    db: DbOption = None,
) -> None:
    """Serve the review desk: the queue of documents that need a person, each page with its
    boxes, corrections checked by the schema, approve / correct / reject, the night's report.

    Binds 127.0.0.1 by default. To bind another address set DOCEXTRACT_REVIEW__TOKEN (people
    open /?token=... once), or keep 127.0.0.1 behind a reverse proxy (docs/review.md).
    """
    import uvicorn

    from pipeline.review.app import create_app
    from pipeline.review.security import is_loopback
    from pipeline.store.db import open_database, safe_url, session_factory

    settings = build_settings(db)
    if not is_loopback(host) and settings.review.token is None:
        raise ConfigError(
            f"binding {host!r} would open the review desk to the network without a token: set "
            "DOCEXTRACT_REVIEW__TOKEN, or bind 127.0.0.1 behind a proxy (docs/review.md)"
        )
    url = settings.db_url.get_secret_value()
    factory = session_factory(open_database(url, create=False))
    shown = "[::1]" if host == "::1" else host
    console.print(f"review desk on http://{shown}:{port}/ over {safe_url(url)}")
    if settings.review.token is not None:
        console.print("open it once as /?token=<the value of DOCEXTRACT_REVIEW__TOKEN>")
    # No access log: a first visit carries ?token= in its URL, which must never reach a log.
    uvicorn.run(
        create_app(settings, factory), host=host, port=port, access_log=False, log_level="warning"
    )


@app.command()
@exits_cleanly
def report(
    out: Annotated[Path, typer.Option("--out", help="HTML file to write.")] = Path("report.html"),
    run: Annotated[int | None, typer.Option("--run", help="Run id (default: the latest).")] = None,
    since: Annotated[
        str | None, typer.Option(help="Instead of one run: all recorded since (24h, 2026-11-27).")
    ] = None,
    db: DbOption = None,
) -> None:
    """Write the night's report: one self-contained HTML file (no script, no network)."""
    from pipeline.review.report import build_report, render_report
    from pipeline.store.db import open_database, session_factory
    from pipeline.store.queries import parse_when

    if run is not None and since is not None:
        raise ConfigError("give --run or --since, not both")
    settings = build_settings(db)
    factory = session_factory(open_database(settings.db_url.get_secret_value(), create=False))
    with factory() as session:
        data = build_report(
            session,
            run_id=run,
            since=parse_when(since) if since else None,
            desk_url=settings.review.base_url.rstrip("/"),
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_report(data), encoding="utf-8")
    console.print(f"report of {data.scope} written to {out} ({data.waiting} waiting for review)")


def eval_reviewed(
    db: str | None, schemas: list[str], as_json: bool, print_report: Callable[..., None]
) -> None:
    """`docextract eval --reviewed`: the model's original records scored against reviewed ones
    (per field, with pipeline.evaluation's metrics), and the confidence calibration."""
    from pipeline.evaluation import evaluate
    from pipeline.review.truth import calibration, reviewed_cases
    from pipeline.store.db import open_database, session_factory
    from pipeline.store.reviews import reviewed

    settings = build_settings(db)
    factory = session_factory(open_database(settings.db_url.get_secret_value(), create=False))
    with factory() as session:
        names: list[str | None] = list(schemas) or [None]
        cases = [c for name in names for c in reviewed_cases(session, name)]
        bands = calibration([r for name in names for r in reviewed(session, schema=name)])
    if not cases:
        raise ConfigError("no approved or corrected record yet: review some in `docextract review`")
    reports = evaluate(cases)
    if as_json:
        data = {"truth": "reviewed", "documents": len(cases), "calibration": bands}
        data["schemas"] = {name: r.to_json() for name, r in reports.items()}
        print(json.dumps(data, indent=2))
        return
    for item in reports.values():
        print_report(item, "the original model output, against reviewed records")
    table = Table(title="confidence calibration (value kept by the reviewer)")
    for column in ("confidence", "values", "mean confidence", "kept"):
        table.add_column(column)
    for band in bands:
        kept = band["kept_share"]
        table.add_row(
            band["band"],
            str(band["values"]),
            str(band["mean_confidence"] or "-"),
            "-" if kept is None else f"{100 * kept:.1f}%",
        )
    console.print(table)
