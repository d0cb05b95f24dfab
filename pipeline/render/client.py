"""The parent's side of the sandboxed render subprocess (`pipeline.render.worker`).

One worker process serves one document: its description ('info') and then its render steps, one
JSON request per line on its stdin, each answered by events ending in "done". Starting Python and
a renderer costs ~60-90 ms, as much as rendering a page, so a document starts one process, not
one per request. A worker that misses its deadline, dies or breaks the protocol is killed with
its process group (and any pdftoppm); the next request starts a fresh one.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError
from pipeline.types import ErrorCategory

Deadline = Callable[[], float]
# All the environment a render worker (and the pdftoppm it starts) gets: it parses untrusted
# files, so it must not hold the database URL, API keys or passwords of the batch process.
# PYTHONPATH carries where the pipeline's code is, when it is not installed.
WORKER_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "PYTHONPATH", "LD_LIBRARY_PATH")


class WorkerTimedOut(Exception):
    """The worker missed its deadline and was killed."""


class WorkerCrashed(Exception):
    """The worker died or broke the protocol; `category` says how it is recorded."""

    def __init__(self, category: ErrorCategory, message: str) -> None:
        super().__init__(message)
        self.category = category


def worker_argv() -> list[str]:
    """The command that starts a render worker."""
    return [sys.executable, "-m", "pipeline.render.worker"]


def worker_env() -> dict[str, str]:
    """The render worker's environment: the `WORKER_ENV` variables that are set, nothing else."""
    return {name: os.environ[name] for name in WORKER_ENV if name in os.environ}


class Workers:
    """The render worker of one document: started on first use, reused for the next request
    once the last one ended with "done", started again after one was killed. Leaving the `with`
    block kills whatever is still running."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir  # the document's cache folder: temp files go there
        self._current: WorkerRun | None = None

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Kill the current worker, if any."""
        if self._current is not None:
            self._current.close()
            self._current = None

    def run(self, request: dict[str, Any], deadline: Deadline) -> Iterator[dict[str, Any]]:
        """Send `request` and yield its events up to "done" (included). `deadline()`
        (time.monotonic() seconds) is read again after every event, so the caller can move it.

        Raises `WorkerTimedOut` past the deadline, `WorkerCrashed` when the worker ends without
        "done" or writes something that is not an event; either way the worker is gone.
        """
        if self._current is None:
            self._current = WorkerRun(self.work_dir)
        finished = False
        try:
            for event in self._current.run(request, deadline):
                finished = event.get("event") == "done"
                yield event
        finally:
            if not finished:  # timed out, crashed, or the caller stopped reading mid-request
                self.close()


class WorkerRun:
    """One render subprocess in its own process group. Requests go through a non-blocking pipe,
    written only while the worker's output is watched against the deadline, so a stuck child can
    never block the parent."""

    def __init__(self, work_dir: Path) -> None:
        # stderr is read only for a diagnosis, never shown on the console.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        self._work_dir = work_dir
        self._buffer = b""
        argv = worker_argv()
        try:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                env=worker_env(),
                start_new_session=True,
            )
        except OSError as exc:
            self._stderr.close()
            raise ConfigError(f"cannot start the render worker {argv!r}: {exc}") from exc
        assert self._proc.stdin is not None and self._proc.stdout is not None
        os.set_blocking(self._proc.stdin.fileno(), False)

    def close(self) -> None:
        """Kill the process group (the worker and any pdftoppm it started) and remove the temp
        files a killed worker leaves (named with its pid; no one else's)."""
        with contextlib.suppress(ProcessLookupError):  # already gone, group and all
            os.killpg(self._proc.pid, signal.SIGKILL)
        self._proc.wait()
        for leftover in [
            *self._work_dir.glob(f".chunk-{self._proc.pid}-*"),
            *self._work_dir.glob(f".*.{self._proc.pid}.tmp"),
        ]:
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
        for stream in (self._proc.stdin, self._proc.stdout):
            assert stream is not None
            stream.close()  # nothing is buffered: requests are written with os.write
        self._stderr.close()

    def run(self, request: dict[str, Any], deadline: Deadline) -> Iterator[dict[str, Any]]:
        """Write `request` and yield the worker's events until "done" (see `Workers.run`)."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        outgoing = json.dumps(request).encode() + b"\n"
        out_fd, in_fd = self._proc.stdout.fileno(), self._proc.stdin.fileno()
        with selectors.DefaultSelector() as selector:
            selector.register(out_fd, selectors.EVENT_READ)
            selector.register(in_fd, selectors.EVENT_WRITE)
            while True:
                while b"\n" in self._buffer:
                    line, self._buffer = self._buffer.split(b"\n", 1)
                    event = self._parse(line)
                    yield event
                    if event.get("event") == "done":
                        return
                remaining = deadline() - time.monotonic()
                if remaining <= 0:
                    raise WorkerTimedOut()
                for key, _ in selector.select(remaining):
                    if key.fd == in_fd:
                        try:
                            outgoing = outgoing[os.write(in_fd, outgoing) :]
                        except BrokenPipeError:
                            outgoing = b""  # it died: its stdout ends next, and says how
                        if not outgoing:
                            selector.unregister(in_fd)
                        continue
                    chunk = os.read(out_fd, 1 << 16)
                    if not chunk:
                        raise self._diagnose()  # end of file: the worker exited without "done"
                    self._buffer += chunk

    def _parse(self, line: bytes) -> dict[str, Any]:
        try:
            event = json.loads(line)
        except ValueError as exc:
            raise WorkerCrashed(
                ErrorCategory.RENDER_CRASH, f"failed: the render worker wrote {line[:80]!r}"
            ) from exc
        if not isinstance(event, dict):
            raise WorkerCrashed(
                ErrorCategory.RENDER_CRASH, f"failed: the render worker wrote {line[:80]!r}"
            )
        return event

    def _diagnose(self) -> WorkerCrashed:
        try:
            code = self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        self._stderr.seek(0, os.SEEK_END)
        self._stderr.seek(max(0, self._stderr.tell() - 600))
        tail = self._stderr.read().decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        if "MemoryError" in tail[0]:
            return WorkerCrashed(
                ErrorCategory.TOO_LARGE,
                "ran out of memory in the render worker; raise DOCEXTRACT_RASTER__RENDER_MEMORY_MB",
            )
        how = (
            f"was killed by {signal.Signals(-code).name}"
            if code is not None and code < 0
            else f"exited with status {code}"
        )
        return WorkerCrashed(
            ErrorCategory.RENDER_CRASH,
            f"failed: the render worker {how} ({tail[0][:200] or 'no message'})",
        )
