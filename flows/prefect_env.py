"""Which Prefect server a command talks to, and the settings that keep a local run quiet.

`connect` is what every command that runs a flow calls BEFORE anything else imports Prefect:
1. quiet defaults (Prefect's INFO logs and telemetry, its first-run notice included, stay out of
   the user's terminal; the CLI shows docextract's progress instead);
2. a PREFECT_API_URL the user configured (environment, Prefect profile, prefect.toml) wins;
3. otherwise `settings.prefect.server`: 'background' starts or reuses the local server of
   `flows.local_server`; 'ephemeral' leaves Prefect to start its temporary one in this process
   (20-25 s on a small machine the first time, so its start-up timeout is raised).
Every value is a default: anything the user set in the environment or a Prefect profile wins.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

from pipeline.settings import PrefectSettings

QUIET_DEFAULTS = {
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # Client-side telemetry (and its first-run notice on a terminal) follows DO_NOT_TRACK only.
    "DO_NOT_TRACK": "1",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    # ... except a flow run's own log (its summary): INFO to the server, WARNING on the terminal.
    "PREFECT_LOGGING_LOGGERS_PREFECT_FLOW_RUNS_LEVEL": "INFO",
    "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING",
    "PREFECT_LOGGING_LOG_PRINTS": "false",
}


@dataclass(frozen=True)
class Connection:
    """The server this process talks to: `api_url` is None for Prefect's temporary server."""

    kind: Literal["external", "background", "ephemeral"]
    api_url: str | None = None
    started_now: bool = False

    @property
    def ui_url(self) -> str | None:
        return self.api_url.removesuffix("/api") if self.api_url else None


def apply_quiet_defaults() -> None:
    for key, value in QUIET_DEFAULTS.items():
        os.environ.setdefault(key, value)


def connect(config: PrefectSettings) -> Connection:
    """Point this process's Prefect client at its server (see the module docstring).

    Raises ConfigError when the background server cannot be started.
    """
    apply_quiet_defaults()
    from prefect.context import refresh_global_settings_context
    from prefect.settings import get_current_settings

    configured = get_current_settings().api.url
    if configured:
        return Connection("external", configured)
    if config.server == "ephemeral":
        return Connection("ephemeral")
    from flows.local_server import ensure

    server, started = ensure(config)
    os.environ["PREFECT_API_URL"] = server.api_url  # flow runs and child processes inherit it
    refresh_global_settings_context()  # Prefect read its settings at import
    return Connection("background", server.api_url, started)
