"""How long a command waits for Prefect: the background local server against the temporary one.

Fills a fresh SQLite database from sample_docs/ once, then runs `docextract run sample_docs` again
and again as a user would (a new process each time; every document already done, so no model
work): with the background server (`DOCEXTRACT_PREFECT__SERVER=background`, its own temporary
home; the first command starts it) and with Prefect's temporary server
(`DOCEXTRACT_PREFECT__SERVER=ephemeral`). For each command: seconds from launch until its flow
started (the flow's `runs` row, written first thing in the flow) and until the command ended,
and the CPU seconds it used (user + system): on a machine shared with other jobs the wall-clock
figures follow the load, the CPU seconds much less, so both are printed, with the load average.

    python bench/cli_latency.py [--repeats 3] [--model tiny-random]

The default backend is `scripted` so the database fills in seconds; a no-op run never calls the
model, and with `--model tiny-random` (or any transformers model) it does not import torch either.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sqlalchemy import func, select  # noqa: E402

from pipeline.store.db import open_database, session_factory  # noqa: E402
from pipeline.store.models import Run  # noqa: E402


def child_cpu_s() -> float:
    """User + system CPU seconds of this process's finished children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def docextract(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        raise SystemExit(f"docextract {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result


def timed_run(
    db_url: str, model_args: list[str], env: dict[str, str]
) -> tuple[float, float, float]:
    """(seconds to flow start, seconds to the end, CPU seconds) of one `docextract run
    sample_docs`."""
    factory = session_factory(open_database(db_url, create=False))
    with factory() as session:
        before = session.scalar(select(func.max(Run.id))) or 0
    launched = datetime.now(UTC)
    started, cpu = time.perf_counter(), child_cpu_s()
    docextract(["run", "sample_docs", "--db", db_url, "--json", *model_args], env)
    total, cpu = time.perf_counter() - started, child_cpu_s() - cpu
    with factory() as session:
        run = session.scalars(select(Run).where(Run.id > before)).one()
    flow_start = run.started_at.replace(tzinfo=run.started_at.tzinfo or UTC)
    return (flow_start - launched).total_seconds(), total, cpu


def series(
    label: str, db_url: str, model_args: list[str], env: dict[str, str], repeats: int
) -> tuple[float, float, float]:
    """Medians (flow start, end, CPU seconds) of the `repeats` commands after the first."""
    runs = []
    for n in range(repeats + 1):
        start, total, cpu = timed_run(db_url, model_args, env)
        print(
            f"{label}: {'next' if n else 'first'} command: flow started after {start:.1f} s, "
            f"done in {total:.1f} s, {cpu:.1f} CPU s (load {os.getloadavg()[0]:.1f})"
        )
        runs.append((start, total, cpu))
    start, total, cpu = (statistics.median(column) for column in zip(*runs[1:], strict=True))
    return start, total, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="Commands after the first.")
    parser.add_argument("--model", help="A model instead of the scripted backend.")
    options = parser.parse_args()
    model_args = ["--model", options.model] if options.model else ["--backend", "scripted"]
    with tempfile.TemporaryDirectory(prefix="docextract-latency-") as folder:
        tmp = Path(folder)
        db_url = f"sqlite:///{tmp / 'docextract.db'}"
        base = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        base.pop("DOCEXTRACT_PREFECT__SERVER", None)
        base.update(PYTHONPATH=str(REPO), DOCEXTRACT_WORKERS="4")
        background = {
            **base,
            "DOCEXTRACT_PREFECT__SERVER": "background",
            "DOCEXTRACT_PREFECT__HOME": str(tmp / "server"),
            "PREFECT_HOME": str(tmp / "client"),
        }
        ephemeral = {
            **base,
            "DOCEXTRACT_PREFECT__SERVER": "ephemeral",
            "PREFECT_HOME": str(tmp / "ephemeral"),
        }
        try:
            docextract(["run", "sample_docs", "--db", db_url, *model_args], background)  # fill
            print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
            bg = series("background server", db_url, model_args, background, options.repeats)
            tmp_server = series("temporary server", db_url, model_args, ephemeral, options.repeats)
        finally:
            docextract(["server", "stop"], background)
        print(f"load average after: {os.getloadavg()[0]:.1f}")
    print(
        f"second command in a row, median of {options.repeats}: flow starts after {bg[0]:.1f} s "
        f"with the background server ({tmp_server[0]:.1f} s with a temporary one); no-op run "
        f"over sample_docs/ {bg[1]:.1f} s ({tmp_server[1]:.1f} s), of which {bg[2]:.1f} CPU s "
        f"({tmp_server[2]:.1f})"
    )


if __name__ == "__main__":
    main()
