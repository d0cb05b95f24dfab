"""Prefect settings that keep a local run quiet and reliable. Import and apply BEFORE prefect.

Without a configured server Prefect starts a temporary local one; on a small machine its first
start can take 20-25 s, so the start-up timeout is raised. Prefect's own INFO logs and telemetry
stay out of the user's terminal; the CLI shows docextract's progress instead. Every value is a
default: anything the user set in the environment or a Prefect profile wins.
"""

from __future__ import annotations

import os

QUIET_DEFAULTS = {
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # Client-side telemetry (and its first-run notice on a terminal) follows DO_NOT_TRACK only.
    "DO_NOT_TRACK": "1",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_LOGGING_LOG_PRINTS": "false",
}


def apply_quiet_defaults() -> None:
    for key, value in QUIET_DEFAULTS.items():
        os.environ.setdefault(key, value)
