"""Prefect workers as subprocesses for the work-pool tests: start them on a fresh process pool,
wait (bounded) until the server lists them, and always stop them with their flow runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

PREFECT = Path(sys.executable).with_name("prefect")
WORKER_START_S = 90  # two imports of prefect on 2 busy cores


@dataclass(frozen=True)
class Workers:
    pool: str
    names: list[str]
    logs: list[Path]

    def log_tails(self, chars: int = 3000) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text()[-chars:]}" for log in self.logs)


@contextmanager
def running_workers(
    names: list[str],
    env: dict[str, str],
    folder: Path,
    prefix: str = "test-pool",
    limit: int = 2,
) -> Iterator[Workers]:
    """A fresh process work pool with a `prefect worker start` subprocess per name (each runs up
    to `limit` flow runs at once) with `env`, registered with the server before this yields;
    killed with their flow runs afterwards, whatever happens."""
    from flows.pool import ensure_pool

    pool = f"{prefix}-{uuid.uuid4().hex[:8]}"
    assert ensure_pool(pool)
    env = {
        **env,
        "PREFECT_WORKER_QUERY_SECONDS": "1",  # pick scheduled runs up within a second
        "PREFECT_WORKER_PREFETCH_SECONDS": "5",
        "PREFECT_LOGGING_LEVEL": "INFO",
    }
    logs = [folder / f"{name}.log" for name in names]
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for name, log in zip(names, logs, strict=True):
            command = [str(PREFECT), "worker", "start", "--pool", pool, "--type", "process"]
            with log.open("wb") as out:
                processes.append(
                    subprocess.Popen(
                        [*command, "--name", name, "--limit", str(limit)],
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        env=env,
                        cwd=folder,
                        start_new_session=True,  # its flow runs share its process group
                    )
                )
        started = Workers(pool, names, logs)
        wait_for_workers(started, processes)
        yield started
    finally:
        stop(processes)


def wait_for_workers(workers: Workers, processes: list[subprocess.Popen[bytes]]) -> None:
    """Return once every worker has registered with the pool; fail with their logs if one
    exits or WORKER_START_S passes first."""
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + WORKER_START_S
    while time.monotonic() < deadline:
        exited = [p.args for p in processes if p.poll() is not None]
        assert not exited, f"a worker exited at start: {exited}\n{workers.log_tails()}"
        with get_client(sync_client=True) as client:
            seen = {w.name for w in client.read_workers_for_work_pool(workers.pool)}
        if set(workers.names) <= seen:
            return
        time.sleep(0.5)
    pytest.fail(
        f"the workers did not register with pool {workers.pool!r} within {WORKER_START_S} s\n"
        + workers.log_tails()
    )


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each worker's process group (the worker and its flow runs), SIGKILL stragglers."""
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)
