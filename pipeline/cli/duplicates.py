"""`docextract duplicates`: the possible duplicate invoices found, and a person's "distinct"."""

from __future__ import annotations

import getpass
import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from pipeline.cli.common import (
    DbOption,
    JsonOption,
    app,
    build_settings,
    console,
    exits_cleanly,
    one_document,
)

if TYPE_CHECKING:
    pass


@app.command()
@exits_cleanly
def duplicates(
    since: Annotated[
        str | None, typer.Option(help="Pairs found since: 2026-11-27, or 36h / 30d ago.")
    ] = None,
    distinct: Annotated[
        tuple[str, str] | None,
        typer.Option(
            help="Mark two documents (sha256 prefix or file name) as different invoices: the "
            "'possible duplicate' reason is cleared and never raised again for them.",
            show_default=False,
        ),
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the possible duplicate invoices (the later document, the one it may repeat, why),
    or mark a pair distinct with --distinct A B."""
    from pipeline.store.db import open_database, session_factory
    from pipeline.store.duplicates import list_pairs, mark_distinct
    from pipeline.store.queries import parse_when

    settings = build_settings(db)
    factory = session_factory(open_database(settings.db_url.get_secret_value(), create=False))
    if distinct is not None:
        with factory.begin() as session:
            first, second = (one_document(session, ref).id for ref in distinct)
            changed = mark_distinct(session, first, second, getpass.getuser())
        console.print(
            f"{distinct[0]} and {distinct[1]} marked distinct; {changed} record(s) cleared",
            markup=False,
        )
        return
    with factory() as session:
        pairs = list_pairs(session, parse_when(since) if since else None)
    if as_json:
        print(json.dumps([p.to_json() for p in pairs], indent=2, ensure_ascii=False))
        return
    table = Table("found", "document", "may repeat", "match", "reason", "distinct")
    for p in pairs:
        table.add_row(
            p.found_at.strftime("%Y-%m-%d %H:%M"),
            p.document,
            p.original,
            p.kind,
            p.reason,
            f"yes ({p.distinct_by})" if p.distinct_by else "",
        )
    console.print(table if pairs else "no possible duplicates found")
