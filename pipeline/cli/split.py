"""`docextract split DOC --pages 1-2,3,4-7`: a person corrects how a file is split into
documents; the documents that changed are extracted again (those whose pages did not change
keep their records and reviews)."""

from __future__ import annotations

import getpass
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

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
    one_document,
    schema_or_default,
)
from pipeline.errors import ConfigError

if TYPE_CHECKING:  # the engine is imported by the command that runs, not by `import pipeline.cli`
    from pipeline.runner import Outcome
    from pipeline.split import Part, Split
    from pipeline.store.models import Document


@app.command("split")
@exits_cleanly
def split_command(
    doc: Annotated[str, typer.Argument(help="The file: sha256 prefix (6+ characters) or name.")],
    pages: Annotated[
        str | None,
        typer.Option(
            help="The documents in the file as page ranges in order, e.g. 1-2,3,4-7 (pages "
            "left out are separator sheets); 1-N makes it one document again. Without it: "
            "print the file's split.",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option(help="Say what would change (documents removed, added); change nothing.")
    ] = False,
    extract: Annotated[
        bool, typer.Option(help="Extract the new documents now (as `docextract run FILE`).")
    ] = True,
    schema: Annotated[str | None, typer.Option(help="Schema(s) for the new documents.")] = None,
    model: Annotated[str | None, typer.Option(help="Model for the new documents.")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show or correct how a file is split into documents (a bundle of several documents)."""
    from pipeline.split import Split, describe, person_split
    from pipeline.store import bundles
    from pipeline.store.db import open_database, session_factory
    from pipeline.store.queries import last_seen_paths

    overrides = cli_overrides(schema=schema_or_default(schema), model=model)
    settings = build_settings(db, **overrides)
    url = settings.db_url.get_secret_value()
    factory = session_factory(open_database(url, create=False))
    with factory() as session:
        file = _the_file(session, doc)
        current = Split.from_json(file.split) if file.split else None
        children = {_part(c): c for c in bundles.parts_of(session, file.id)}
        page_count = file.page_count
        paths = last_seen_paths(file)
        statuses = {
            part: [f"{e.schema_name}: {e.status}" for e in child.extractions]
            for part, child in children.items()
        }
    if pages is None:
        _print_split(doc, current, statuses, as_json)
        return
    if page_count is None:
        raise ConfigError(f"{doc!r} has not been rendered yet: run `docextract run` on it first")
    try:
        wanted = person_split(page_count, pages, getpass.getuser(), "docextract split")
    except ValueError as exc:
        raise ConfigError(f"--pages {pages!r}: {exc}") from None
    parts, separators = wanted.parts, wanted.separators
    removed = [p for p in children if p not in parts]
    added = [p for p in parts if p not in children] if not wanted.is_whole else []
    change = {
        "file": doc,
        "pages": describe(parts),
        "separators": list(separators),
        "before": describe(current.parts) if current else f"1-{page_count} (never split)",
        "removed": [{"pages": describe([p]), "records": statuses.get(p, [])} for p in removed],
        "added": [describe([p]) for p in added],
    }
    if dry_run:
        _print_change(change, as_json, "would change")
        return
    if extract:
        check_names(settings)  # a mistyped model stops here, before the split is changed
    with factory.begin() as session:
        bundles.replace_split(session, file.id, wanted.to_json(), keep=set(parts))
    outcomes = _extract_again(paths[0], overrides, settings, as_json) if extract and paths else []
    if as_json:  # one JSON document: the change and what extracting it did
        print(
            json.dumps({"changed": change, "outcomes": [o.to_json() for o in outcomes]}, indent=2)
        )
        return
    _print_change(change, as_json, "changed")
    if outcomes:
        from pipeline.cli.output import print_outcomes

        print_outcomes(console, outcomes)


def _part(child: Document) -> Part:
    assert child.first_page is not None and child.last_page is not None
    return child.first_page, child.last_page


def _the_file(session: Any, reference: str) -> Document:
    from pipeline.store.models import Document

    document: Document = one_document(session, reference)
    if document.parent_id is not None:  # a child document: its file is the one to split
        parent = session.get(Document, document.parent_id)
        assert parent is not None
        return parent
    return document


def _extract_again(
    path: str, overrides: dict[str, Any], settings: Any, as_json: bool
) -> list[Outcome]:
    """The file through the extraction flow, as `docextract run FILE` (the documents whose pages
    did not change are done already)."""
    from flows.extract import run_extraction  # Prefect: only when a flow runs
    from pipeline.cli.output import progress_bar
    from pipeline.cli.server import connect_prefect

    if not Path(path).is_file():
        err_console.print(
            f"{path} is gone: put it back and run `docextract run` on it to extract the new "
            "documents",
            markup=False,
        )
        return []
    os.environ["DOCEXTRACT_DB_URL"] = settings.db_url.get_secret_value()
    connect_prefect(settings)
    with progress_bar(console, enabled=not as_json):
        return list(run_extraction([path], overrides, settings))


def _print_split(
    doc: str, split: Split | None, statuses: dict[tuple[int, int], list[str]], as_json: bool
) -> None:
    from pipeline.split import describe

    if as_json:
        print(json.dumps(split.to_json() if split else None, indent=2, ensure_ascii=False))
        return
    if split is None:
        console.print(f"{doc}: never split (one document)", markup=False)
        return
    kind = "one document" if split.is_whole else f"{len(split.parts)} documents"
    parts = describe(split.parts)
    console.print(f"{doc}: {kind}, pages {parts} (split by {split.by})", markup=False)
    if split.separators:
        console.print(f"  separator sheets: {', '.join(map(str, split.separators))}", markup=False)
    for part in split.parts:
        records = "; ".join(statuses.get(part, [])) or "not extracted yet"
        console.print(f"  pages {describe([part])}: {records}", markup=False)
    for b in split.boundaries:
        verdict = "starts a document" if b.starts else "continues"
        console.print(
            f"  page {b.page}: {verdict} ({b.confidence:.2f}, {b.by}: {b.why})", markup=False
        )


def _print_change(change: dict[str, Any], as_json: bool, verb: str) -> None:
    if as_json:
        print(json.dumps({verb.replace(" ", "_"): change}, indent=2, ensure_ascii=False))
        return
    console.print(
        f"{change['file']}: {verb}: {change['before']} -> {change['pages']}", markup=False
    )
    for item in change["removed"]:
        records = "; ".join(item["records"]) or "no records"
        console.print(f"  removed: pages {item['pages']} ({records})", markup=False)
    for pages in change["added"]:
        console.print(f"  new document: pages {pages}", markup=False)
