"""The background local Prefect server: started on first use, reused, restarted when it died.

It lives in one folder (`settings.prefect.home`, its PREFECT_HOME): Prefect's database
(`prefect.db`), `server.log`, `server.json` (pid, port, start time) and `server.lock`, which makes
two commands that start at once start one server. The server runs `prefect server start` on
127.0.0.1 in its own session, so it outlives the command that started it. Nothing here imports
Prefect: `docextract server status` answers in well under a second.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pipeline.errors import ConfigError
from pipeline.settings import PrefectSettings

STATE_FILE = "server.json"
LOG_FILE = "server.log"
LOCK_FILE = "server.lock"
HOST = "127.0.0.1"
PORTS_TRIED = 20
# A first start creates and migrates the database: 20-25 s on an idle 2-core machine.
START_TIMEOUT_S = 180.0
# How often a starting server is asked whether it is up: a refused connection costs microseconds,
# and every poll missed is time the first command waits after the server is ready.
POLL_S = 0.05
# Server-side defaults; the user's environment wins.
SERVER_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
}


@dataclass(frozen=True)
class LocalServer:
    """A started background server, as recorded in its state file."""

    pid: int
    port: int
    started_at: str

    @property
    def url(self) -> str:
        """The UI's address."""
        return f"http://{HOST}:{self.port}"

    @property
    def api_url(self) -> str:
        """What PREFECT_API_URL must be for a client of this server."""
        return f"{self.url}/api"


@dataclass(frozen=True)
class ServerStatus:
    state: Literal["running", "dead", "stopped"]
    home: Path
    server: LocalServer | None = None

    def describe(self) -> str:
        if self.state == "running" and self.server:
            return (
                f"running at {self.server.url} (pid {self.server.pid}, since "
                f"{self.server.started_at}); home {self.home}"
            )
        if self.state == "dead":
            return (
                f"not answering (recorded pid {self.server and self.server.pid}); home {self.home}"
            )
        return f"not running; home {self.home}"


def status(home: Path) -> ServerStatus:
    """Whether the server recorded under `home` is running and answering."""
    server = _read_state(home)
    if server is None:
        return ServerStatus("stopped", home)
    if _is_ours(server.pid) and _answers(server):
        return ServerStatus("running", home, server)
    return ServerStatus("dead", home, server)


def ensure(config: PrefectSettings, timeout_s: float = START_TIMEOUT_S) -> tuple[LocalServer, bool]:
    """The running server under `config.home`, started (or restarted) if needed.

    Returns (server, started_now). Raises ConfigError, naming the log, when a server cannot be
    started within `timeout_s` seconds.
    """
    home = config.home.expanduser()
    found = status(home)
    if found.state == "running" and found.server:
        return found.server, False
    home.mkdir(parents=True, exist_ok=True)
    with _locked(home):  # a command that started one meanwhile has finished waiting for it
        found = status(home)
        if found.state == "running" and found.server:
            return found.server, False
        if found.server:
            _terminate(found.server.pid)  # dead, or alive but not answering
        server = _spawn(home, _free_port(config.port))
        _write_state(home, server)
        _wait_until_up(home, server, timeout_s)
        return server, True


def stop(home: Path, timeout_s: float = 15.0) -> ServerStatus:
    """Stop the server recorded under `home` (if any) and forget it. Returns what was found."""
    with _locked(home) if home.is_dir() else _nothing():
        found = status(home)
        if found.server:
            _terminate(found.server.pid, timeout_s)
        (home / STATE_FILE).unlink(missing_ok=True)
    return found


def _spawn(home: Path, port: int) -> LocalServer:
    # Nothing of docextract's (the database URL among it) lives on in the server's environment.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PREFECT_API_URL", "PREFECT_PROFILE") and not k.startswith("DOCEXTRACT_")
    }
    env = {**SERVER_DEFAULTS, **env, "PREFECT_HOME": str(home)}
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", HOST]
    with open(home / LOG_FILE, "ab") as log:
        log.write(f"\n--- {_now()} starting on port {port}\n".encode())
        process = subprocess.Popen(
            [*command, "--port", str(port)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # not killed with the command's terminal or process group
            cwd=home,
        )
    return LocalServer(pid=process.pid, port=port, started_at=_now())


def _wait_until_up(home: Path, server: LocalServer, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _answers(server):
            return
        if not _alive(server.pid):
            (home / STATE_FILE).unlink(missing_ok=True)
            raise ConfigError(
                f"the local Prefect server exited at start; see {str(home / LOG_FILE)!r}:\n"
                f"{_log_tail(home)}"
            )
        time.sleep(POLL_S)
    _terminate(server.pid)
    (home / STATE_FILE).unlink(missing_ok=True)
    raise ConfigError(
        f"the local Prefect server did not answer within {timeout_s:.0f} s; see "
        f"{str(home / LOG_FILE)!r}, or set DOCEXTRACT_PREFECT__SERVER=ephemeral"
    )


def _answers(server: LocalServer, timeout_s: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{server.api_url}/health", timeout=timeout_s) as response:
            return bool(response.status == 200 and response.read().strip() == b"true")
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _free_port(first: int) -> int:
    for port in range(first, min(first + PORTS_TRIED, 65536)):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((HOST, port))
            except OSError:
                continue
            return port
    raise ConfigError(
        f"ports {first}-{first + PORTS_TRIED - 1} on {HOST} are all taken; set "
        "DOCEXTRACT_PREFECT__PORT to a free one"
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (our own child, not yet reaped) is not alive
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _is_ours(pid: int) -> bool:
    """Alive and a Prefect server, not an unrelated process that got the pid after a reboot."""
    if not _alive(pid):
        return False
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc: trust the pid
    return b"prefect" in command and b"server" in command


def _terminate(pid: int, timeout_s: float = 15.0) -> None:
    """SIGTERM the server's process group, SIGKILL it if it is still there after `timeout_s`."""
    if not _is_ours(pid):
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            _reap(pid)
            if not _alive(pid):
                return
            time.sleep(POLL_S)


def _reap(pid: int) -> None:
    with suppress(ChildProcessError):  # started by another command: its parent reaps it
        os.waitpid(pid, os.WNOHANG)


def _read_state(home: Path) -> LocalServer | None:
    try:
        return LocalServer(**json.loads((home / STATE_FILE).read_text()))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError):  # a torn or foreign file: treat as no server
        return None


def _write_state(home: Path, server: LocalServer) -> None:
    partial = home / f"{STATE_FILE}.tmp"
    partial.write_text(json.dumps(asdict(server)))
    partial.replace(home / STATE_FILE)


@contextmanager
def _locked(home: Path) -> Iterator[None]:
    with open(home / LOCK_FILE, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def _log_tail(home: Path, lines: int = 15) -> str:
    try:
        return "\n".join((home / LOG_FILE).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
