"""The night's report: one self-contained HTML page (inline CSS and SVG, no script, no network).

What a run (or the last hours) did: documents per status and error category, pages per hour and
tokens per page against the runs before it, the slowest documents, the most common review
reasons, the failed documents with the command that reruns each, and a link into the queue.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader
from sqlalchemy.orm import Session

from pipeline.store import report as store
from pipeline.store.queries import RunMetrics, last_seen_paths, recent_run_metrics
from pipeline.store.reviews import reason_key

HERE = Path(__file__).parent
COMPARED_RUNS = 8
DESK_URL = "http://127.0.0.1:8765"


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    note: str = ""
    highlight: bool = False


@dataclass
class ReportData:
    title: str
    scope: str
    generated_at: datetime
    documents: int
    statuses: list[Bar]
    categories: list[Bar]
    pages_per_hour: list[Bar]
    tokens_per_page: list[Bar]
    slowest: list[dict[str, Any]]
    reasons: list[Bar]
    failed: list[dict[str, Any]]
    queue_url: str
    waiting: int
    desk_url: str = ""
    runs: list[RunMetrics] = field(default_factory=list)


def build_report(
    session: Session,
    *,
    run_id: int | None = None,
    since: datetime | None = None,
    desk_url: str = DESK_URL,
) -> ReportData:
    """Gather the report of run `run_id`, or of everything recorded since `since` (one of the
    two; neither: the latest run). `desk_url` prefixes the links into the queue ('' for links
    relative to the desk that serves the report)."""
    if run_id is None and since is None:
        run_id = store.latest_run(session)
    rows = store.covered(session, run_id=run_id, since=since) if run_id or since else []
    statuses = Counter(r.status for r in rows)
    categories = Counter(r.error_category for r in rows if r.error_category)
    reasons: Counter[str] = Counter()
    for row in rows:
        reasons.update({reason_key(str(r)) for r in row.review_reasons or []})
    metrics = recent_run_metrics(session, limit=50)
    shown = _compared(metrics, run_id, since, session)
    waiting = sum(statuses[s] for s in ("needs_review", "partial"))
    waiting += sum(1 for r in rows if r.status == "failed" and r.pages_total)
    query = urlencode({"run": run_id}) if run_id else ""
    scope = (
        f"run {run_id}"
        if run_id
        else f"since {since:%Y-%m-%d %H:%M} UTC"
        if since
        else "no run yet"
    )
    return ReportData(
        title=f"docextract: {scope}",
        scope=scope,
        generated_at=datetime.now(UTC),
        documents=len({r.document_id for r in rows}),
        statuses=[Bar(s, n) for s, n in statuses.most_common()],
        categories=[Bar(c, n) for c, n in categories.most_common()],
        pages_per_hour=[
            Bar(f"run {m.run_id}", m.pages_per_hour or 0.0, _when(m), m.run_id == run_id)
            for m in shown
        ],
        tokens_per_page=[
            Bar(f"run {m.run_id}", m.tokens_per_page or 0.0, _when(m), m.run_id == run_id)
            for m in shown
        ],
        slowest=[_document(r) for r in sorted(rows, key=lambda r: -(r.seconds or 0))[:10]],
        reasons=[Bar(k, n) for k, n in reasons.most_common(10)],
        failed=[_failed(r) for r in rows if r.status == "failed"][:200],
        queue_url=f"{desk_url}/?{query}" if query else f"{desk_url}/",
        waiting=waiting,
        desk_url=desk_url,
        runs=shown,
    )


def _compared(
    metrics: list[RunMetrics], run_id: int | None, since: datetime | None, session: Session
) -> list[RunMetrics]:
    """The report's run(s) and the runs just before, oldest first (for the bar charts)."""
    if run_id is not None:
        older = [m for m in metrics if m.run_id <= run_id]
        return list(reversed(older[:COMPARED_RUNS]))
    if since is not None:
        recent = set(store.runs_since(session, since))
        before = [m for m in metrics if m.run_id not in recent][:3]
        mine = [m for m in metrics if m.run_id in recent]
        return list(reversed(mine[:COMPARED_RUNS] + before))
    return []


def _when(m: RunMetrics) -> str:
    return f"{m.started_at:%m-%d %H:%M}"


def _name(row: Any) -> str:
    paths = last_seen_paths(row.document)
    return Path(paths[0]).name if paths else row.document.sha256[:12]


def _document(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": _name(row),
        "schema": row.schema_name,
        "status": row.status,
        "seconds": row.seconds or 0.0,
        "pages": row.pages_total,
    }


def _failed(row: Any) -> dict[str, Any]:
    sha = row.document.sha256[:12]
    return {
        **_document(row),
        "category": row.error_category or "",
        "message": row.error_message or "",
        "command": f"docextract rerun --doc {sha} --schema {row.schema_name} --status failed",
    }


def render_report(data: ReportData) -> str:
    """The report as one HTML page (autoescaped; charts as inline SVG)."""
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True)
    return env.get_template("report.html").render(r=data, chart=_chart_rows)


def _chart_rows(bars: list[Bar], width: int = 360) -> list[dict[str, Any]]:
    """Bar geometry for the SVG: each bar's length in px, scaled to the largest value."""
    top = max([b.value for b in bars] + [0.0]) or 1.0
    return [
        {"bar": b, "y": i * 22, "w": max(1.0, width * b.value / top) if b.value else 0.0}
        for i, b in enumerate(bars)
    ]


def status_hint(counts: dict[str, int], run_id: int | None, desk_url: str = DESK_URL) -> str:
    """The line `docextract status` ends with: what waits, where the desk and the report are."""
    waiting = sum(counts.get(s, 0) for s in ("needs_review", "partial", "failed"))
    report = f"--run {run_id} " if run_id else ""
    where = f"{desk_url}/runs/{run_id}" if run_id else f"{desk_url}/runs/latest"
    return (
        f"review: up to {waiting} document(s) wait; `docextract review` serves the desk at "
        f"{desk_url}/; the night's report: `docextract report {report}--out report.html`, or "
        f"{where} in the desk"
    )
