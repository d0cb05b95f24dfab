"""How the CLI shows things: progress, run summaries, status tables, documents as JSON."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.errors import MarkupError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from pipeline import progress
from pipeline.pathtext import to_text
from pipeline.store.queries import RunMetrics, to_utc_assumed

if TYPE_CHECKING:
    from pipeline.runner import Outcome
    from pipeline.store.models import Document, Extraction

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
STATUS_STYLE = {
    "succeeded": "green",
    "needs_review": "yellow",
    "partial": "yellow",
    "failed": "red",
    "running": "cyan",
    "pending": "dim",
}


def local_time(moment: datetime | str | None) -> str:
    """Every time on screen in one format: this machine's local time, to the second (the
    time `--since`/`--until` read). Stored times are UTC; SQLite hands them back naive."""
    if moment is None:
        return "-"
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return to_utc_assumed(moment).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def iso_time(moment: datetime | None) -> str | None:
    """A stored time for JSON: ISO 8601 in UTC with its offset."""
    return None if moment is None else to_utc_assumed(moment).isoformat()


def add_columns(table: Table, names: Sequence[str]) -> None:
    """Columns that never wrap: a file name is never split, and a row stays one line (see
    `fit_reason`)."""
    for name in names:
        table.add_column(name, no_wrap=True, overflow="ellipsis")


def fit_reason(table: Table, console: Console) -> Table:
    """Give the `reason` column what the other columns leave of the console's width (at least
    8), so a reason (one line already, with a count of the others) ends in an ellipsis
    instead of wrapping over many lines; `show` has it in full."""
    others = 0
    for column in table.columns:
        if column.header == "reason":
            continue
        cells = [_cell_len(c) for c in column._cells]
        others += max([len(str(column.header)), *cells]) + 3  # padding and border
    reason = next((c for c in table.columns if c.header == "reason"), None)
    if reason is not None:
        reason.width = max(8, console.width - others - 4)
    return table


def _cell_len(cell: object) -> int:
    if isinstance(cell, Text):  # shown as it is (names, reasons: see `_plain`)
        return cell.cell_len
    if not isinstance(cell, str):
        return 1
    try:
        return Text.from_markup(cell).cell_len
    except MarkupError:
        return Text(cell).cell_len


@contextmanager
def progress_bar(console: Console, enabled: bool = True) -> Iterator[None]:
    """A progress bar fed by the run's progress events (documents done of discovered)."""
    if not enabled:
        yield
        return
    bar = Progress(
        TextColumn("[bold]extracting"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[last]}", markup=False),  # holds file names
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    task = bar.add_task("documents", total=None, last="starting Prefect...")
    done: set[str] = set()

    def listen(event: progress.ProgressEvent) -> None:
        if event.kind == "discovered":
            bar.update(task, total=event.total, last="")
        elif event.kind == "document_done" and event.path not in done:
            done.add(event.path)
            bar.update(task, advance=1, last=f"{_name(event.path).plain}: {event.status}")

    progress.add_listener(listen)
    try:
        with bar:
            yield
    finally:
        progress.remove_listener(listen)


def print_outcomes(
    console: Console, outcomes: Sequence[Outcome], as_json: bool = False, title: str = "run"
) -> None:
    if as_json:
        print(json.dumps([o.to_json() for o in outcomes], indent=2))
        return
    table = Table(title=f"docextract {title}")
    add_columns(table, ("document", "pages", "schema", "status", "reason", "seconds"))
    for o in outcomes:
        # A row without a sha256 has no stored unit (a path skipped or unreadable): not "unchanged".
        fresh = o.did_work or not o.sha256
        table.add_row(
            _name(o.path),
            str(o.pages or "-"),
            o.schema,
            f"[{STATUS_STYLE.get(o.status, '')}]{o.status}[/]",
            _plain(o.reason or ""),
            f"{o.seconds:.1f}" if fresh else "unchanged",
        )
    console.print(fit_reason(table, console))
    counts = Counter(o.status for o in outcomes)
    worked = sum(1 for o in outcomes if o.did_work)
    done_before = sum(1 for o in outcomes if not o.did_work and o.sha256)
    console.print(
        ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        + f"; {worked} extracted now, {done_before} already done"
    )


def _name(path: str) -> Text:
    """The file name of `path` for the terminal (see `_plain`; bytes that are not UTF-8 as in
    `pipeline.pathtext`)."""
    return _plain(to_text(path.rsplit("/", 1)[-1]))


def _plain(text: str) -> Text:
    """`text` shown as it is: Rich markup in it (`[link=...]`) is not interpreted, and control
    characters (an ANSI escape in a file name) are written as `\\xHH`, never sent raw."""
    return Text(_CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text))


def print_status(
    console: Console,
    counts: dict[str, int],
    latest: Sequence[Extraction],
    as_json: bool = False,
    runs: Sequence[RunMetrics] = (),
    errors: dict[str, int] | None = None,
) -> None:
    rows = [_extraction_row(e) for e in latest]
    errors = errors or {}
    if as_json:
        data = {"counts": counts, "errors": errors, "runs": [r.to_json() for r in runs]}
        print(json.dumps({**data, "latest": rows}, indent=2, default=str))
        return
    summary = Table(title="extractions by status")
    summary.add_column("status")
    summary.add_column("count", justify="right")
    for status, count in sorted(counts.items()):
        summary.add_row(f"[{STATUS_STYLE.get(status, '')}]{status}[/]", str(count))
    console.print(summary)
    if errors:
        by_category = Table(title="failed by error category")
        by_category.add_column("error category")
        by_category.add_column("count", justify="right")
        for category, count in sorted(errors.items(), key=lambda item: (-item[1], item[0])):
            by_category.add_row(category, str(count))
        console.print(by_category)
    if runs:
        console.print(_runs_table(runs))
    table = Table(title="latest")
    add_columns(table, ("document", "sha256", "schema", "model", "status", "reason", "updated"))
    for row in rows:
        table.add_row(
            _plain(row["document"]),
            row["sha256"][:12],
            row["schema"],
            row["model_id"],
            f"[{STATUS_STYLE.get(row['status'], '')}]{row['status']}[/]",
            _plain(row["reason"] or ""),
            local_time(row["updated_at"]),
        )
    console.print(fit_reason(table, console))
    from pipeline.review.report import status_hint

    console.print(status_hint(counts, runs[0].run_id if runs else None))


def _runs_table(runs: Sequence[RunMetrics]) -> Table:
    """Recent runs: what they did and their throughput (wall clock) and token cost per page."""
    table = Table(title="recent runs")
    for column in ("run", "kind", "started", "extractions", "pages", "pages/hour", "tokens/page"):
        table.add_column(column, justify="right" if column != "kind" else "left")
    for r in runs:
        rate = r.pages_per_hour
        tokens = r.tokens_per_page
        table.add_row(
            str(r.run_id),
            r.kind,
            local_time(r.started_at),
            str(r.extractions),
            str(r.pages),
            "unfinished" if r.finished_at is None else (f"{rate:,.0f}" if rate else "-"),
            f"{tokens:,.0f}" if tokens else "-",
        )
    return table


def _extraction_row(e: Extraction) -> dict[str, Any]:
    from pipeline.store.bundles import document_name

    return {
        "document": document_name(e.document),
        "sha256": e.document.sha256,
        "schema": e.schema_name,
        "model_id": e.model_id,
        "status": e.status,
        "error_category": e.error_category,
        "reason": e.reason,
        "tokens": e.input_tokens + e.output_tokens,
        "pages": e.pages_total,
        "updated_at": e.updated_at,
    }


def document_json(document: Document, raw: bool = False) -> dict[str, Any]:
    """A document with its pages, current extractions (record + provenance) and history."""
    return {
        "sha256": document.sha256,
        "media_type": document.media_type,
        "size_bytes": document.size_bytes,
        "page_count": document.page_count,
        "paths": [p.path for p in document.paths],
        "first_seen_at": iso_time(document.first_seen_at),
        "last_seen_at": iso_time(document.last_seen_at),
        "pages": [
            {
                "number": p.number,
                "width": p.width,
                "height": p.height,
                "dpi": p.dpi,
                "rotation": p.rotation,
            }
            for p in document.pages
        ],
        "extractions": [_extraction_json(e, raw) for e in document.extractions],
        **_bundle_json(document),
    }


def _bundle_json(document: Document) -> dict[str, Any]:
    """A bundle's split and child documents; a child's file and page range."""
    from pipeline.store.bundles import pages_label

    if document.parent is not None:
        parent = document.parent
        return {
            "part_of": {
                "sha256": parent.sha256,
                "name": parent.paths[0].name if parent.paths else None,
                "pages": pages_label(document),
            }
        }
    if document.split is None:
        return {}
    return {
        "split": {k: v for k, v in document.split.items() if k != "history"},
        "documents": [
            {
                "sha256": part.sha256,
                "pages": pages_label(part),
                "extractions": [
                    {"schema": e.schema_name, "status": e.status, "reason": e.reason}
                    for e in part.extractions
                ],
            }
            for part in document.parts
        ],
        "split_history": document.split.get("history", []),
    }


def _extraction_json(e: Extraction, raw: bool) -> dict[str, Any]:
    data: dict[str, Any] = {
        "schema": e.schema_name,
        "status": e.status,
        "error_category": e.error_category,
        "error_message": e.error_message,
        "review_reasons": e.review_reasons,
        "record": e.record,
        "evidence": e.field_confidence,
        "provenance": {
            **e.provenance,
            "model_id": e.model_id,
            "schema_version": e.schema_version,
            "prompt_version": e.prompt_version,
        },
        "tokens": {"image": e.image_tokens, "input": e.input_tokens, "output": e.output_tokens},
        "pages": {"total": e.pages_total, "failed": e.pages_failed},
        "timings": e.timings,
        "seconds": e.seconds,
        "model_calls": e.model_calls,
        "cpu_seconds": e.cpu_seconds,
        "gpu_seconds": e.gpu_seconds,
        "attempts": e.attempts,
        "errors": e.errors,
        "updated_at": iso_time(e.updated_at),
        "history": [
            {
                "at": iso_time(ev.at),
                "status": ev.status,
                "attempt": ev.attempt,
                "error_category": ev.error_category,
                "error_message": ev.error_message,
            }
            for ev in e.events
        ],
    }
    if raw:
        data["raw_outputs"] = e.raw_outputs
    return data


def print_evidence(console: Console, document: Document) -> None:
    """Per current extraction, one row per field: value, confidence, page, box, match, reasons
    (the `field_confidence` evidence of `vouch`)."""
    from pipeline.evidence import leaves

    for e in document.extractions:
        evidence = e.field_confidence or {}
        values = dict(leaves(e.record)) if e.record else {}
        table = Table(title=f"{e.schema_name} ({e.status}, {e.model_id})")
        for column in ("field", "value", "confidence", "page", "box", "match", "reasons"):
            table.add_column(column, overflow="fold")
        for path, value in values.items():
            found = evidence.get(path, {})
            confidence = found.get("confidence")
            box = found.get("box")
            table.add_row(
                path,
                str(value),
                "-" if confidence is None else f"{confidence:.2f}",
                str(found.get("page") or "-"),
                ",".join(map(str, box)) if box else "-",
                found.get("match") or "-",
                "; ".join(found.get("reasons") or []),
            )
        console.print(table)
        if not evidence:
            console.print("no evidence stored (grounding off, or an extraction made before it)")
