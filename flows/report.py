"""What a flow run leaves in Prefect: its summary in the run log, and the same as a markdown
artifact that the UI shows on the run page (Artifacts tab), for runs started from the CLI, a
schedule or the UI alike. The texts are plain functions of the flow's result rows; only
`publish` touches Prefect.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

from pipeline.types import Status

PROBLEMS = (Status.FAILED.value, Status.PARTIAL.value)
MAX_ROWS = 200  # an artifact is for reading; the database and `docextract status` hold the rest
MAX_REASON = 300


def outcome_report(title: str, rows: list[dict[str, Any]]) -> tuple[list[str], str]:
    """Log lines and markdown for a run's outcome rows (`Outcome.to_json()`): counts per
    status, work done, and every failed or partial (document, schema) with its reason."""
    counts = Counter(row["status"] for row in rows)
    documents = len({row["path"] for row in rows})
    worked = sum(1 for row in rows if row["did_work"])
    problems = [row for row in rows if row["status"] in PROBLEMS]
    line = (
        f"{title}: {documents} document(s); {_counts_text(counts)}; {worked} extracted now, "
        f"{len(rows) - worked} unchanged"
    )
    lines = [line] + [
        f"{row['status']}: {_name(row)} ({row['schema']}): {_reason(row['reason'])}"
        for row in problems
    ]
    markdown = [f"# {title}", "", line, "", *_counts_table(counts)]
    if problems:
        markdown += ["", f"## Failed or partial ({len(problems)})", ""]
        markdown += _table(
            ["document", "sha256", "schema", "status", "reason"],
            [
                [_name(r), r["sha256"][:12], r["schema"], r["status"], _reason(r["reason"])]
                for r in problems
            ],
        )
    return lines, "\n".join(markdown)


def plan_report(title: str, plan: dict[str, Any]) -> tuple[list[str], str]:
    """Log lines and markdown for a rerun plan (`RerunPlan.to_json()`): what a dry run would
    redo, and what it cannot redo with why."""
    units, skipped = plan["units"], plan["skipped"]
    line = f"{title}: {len(units)} extraction(s) would be redone, {len(skipped)} skipped"
    lines = [line] + [
        f"skipped: {u['name']} ({u['schema_name']}): {_reason(u['skip_reason'])}" for u in skipped
    ]
    markdown = [f"# {title}", "", line, ""]
    markdown += _table(
        ["document", "sha256", "schema", "model", "status", "reason"],
        [
            [u["name"], u["sha256"][:12], u["schema_name"], u["model_id"], u["status"],
             _reason(u["reason"])]
            for u in units
        ],
    )  # fmt: skip
    if skipped:
        markdown += ["", f"## Skipped ({len(skipped)})", ""]
        markdown += _table(
            ["document", "schema", "status", "why"],
            [[u["name"], u["schema_name"], u["status"], _reason(u["skip_reason"])]
             for u in skipped],
        )  # fmt: skip
    return lines, "\n".join(markdown)


def publish(key: str, lines: list[str], markdown: str) -> None:
    """Write `lines` to the current flow run's log (INFO: failed documents are data, not
    errors) and `markdown` as its artifact under `key` (lowercase letters, digits, dashes)."""
    from prefect import get_run_logger
    from prefect.artifacts import create_markdown_artifact

    logger = get_run_logger()
    for line in lines:
        logger.info(line)
    key = re.sub(r"[^a-z0-9-]+", "-", key.lower()).strip("-")
    create_markdown_artifact(markdown=markdown, key=key, description=lines[0])


def _counts_text(counts: Counter[str]) -> str:
    return ", ".join(f"{n} {status}" for status, n in counts.most_common()) or "nothing to do"


def _counts_table(counts: Counter[str]) -> list[str]:
    return _table(["status", "count"], [[s, str(n)] for s, n in counts.most_common()])


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    shown = rows[:MAX_ROWS]
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in shown]
    if len(rows) > len(shown):
        out.append(f"\n... and {len(rows) - len(shown)} more (`docextract status` lists them)")
    return out


def _name(row: dict[str, Any]) -> str:
    return Path(row["path"]).name or row["path"]


def _reason(reason: str | None) -> str:
    text = " ".join((reason or "").split())
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 1] + "…"


def _cell(value: str) -> str:
    return value.replace("|", "\\|")
