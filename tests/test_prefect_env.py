"""Prefect's own output stays out of the user's terminal: the quiet defaults, on a real terminal."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def on_a_terminal(code: str, env: dict[str, str], timeout: float = 120) -> str:
    """Run `python -c code` with stdin, stdout and stderr on a pseudo-terminal; its output."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        stdin=follower,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(leader)
    process.wait(timeout=timeout)
    return output.decode(errors="replace")


def test_prefect_telemetry_notice_is_not_printed_on_a_terminal(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DO_NOT_TRACK"))}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), PYTHONPATH=str(REPO))
    quiet = "from flows.prefect_env import apply_quiet_defaults; apply_quiet_defaults()\n"
    output = on_a_terminal(quiet + "import prefect; print('imported')", env)
    assert "imported" in output
    assert "anonymous usage" not in output, output
