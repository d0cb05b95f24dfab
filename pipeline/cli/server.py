"""`docextract server start|status|stop`: the background local Prefect server, and
`connect_prefect`, which every command that runs a flow calls before it imports the flow.

Where no PREFECT_API_URL is configured, the first such command starts a Prefect server in the
background (`DOCEXTRACT_PREFECT__HOME`, default ~/.local/share/docextract/prefect) and every later
one reuses it, so runs start in seconds and their history and UI stay.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING

import typer

from pipeline.cli.common import JsonOption, app, build_settings, console, err_console, exits_cleanly
from pipeline.settings import Settings

if TYPE_CHECKING:
    from flows.prefect_env import Connection

server_app = typer.Typer(no_args_is_help=True, help="The background local Prefect server.")
app.add_typer(server_app, name="server")


def connect_prefect(settings: Settings) -> Connection:
    """Point this process at its Prefect server (starting the local one if that is the choice)
    and say where its UI is. Raises ConfigError when the local server cannot start."""
    from flows.prefect_env import connect

    connection = connect(settings.prefect)
    if connection.kind == "background":
        started = "started now; `docextract server stop` stops it" if connection.started_now else ""
        err_console.print(
            f"[dim]Prefect UI: {connection.ui_url}{f' ({started})' if started else ''}[/]",
            highlight=False,
        )
    return connection


@server_app.command("start")
@exits_cleanly
def start() -> None:
    """Start the local Prefect server (if it is not running) and print its UI address."""
    from flows.local_server import ensure

    settings = build_settings()
    server, started = ensure(settings.prefect)
    verb = "started" if started else "already running"
    console.print(f"Prefect server {verb}: UI at {server.url} (home {settings.prefect.home})")


@server_app.command("status")
@exits_cleanly
def status(as_json: JsonOption = False) -> None:
    """Whether the local Prefect server runs, its UI address and home. Exit 1 when it does not."""
    from flows.local_server import status as server_status

    found = server_status(build_settings().prefect.home.expanduser())
    if as_json:
        info = {"state": found.state, "home": str(found.home)}
        if found.server:
            info |= {**asdict(found.server), "url": found.server.url}
        print(json.dumps(info))
    else:
        console.print(f"Prefect server {found.describe()}", highlight=False)
    if found.state != "running":
        raise typer.Exit(1)


@server_app.command("stop")
@exits_cleanly
def stop() -> None:
    """Stop the local Prefect server. Its history stays in its home for the next start."""
    from flows.local_server import stop as stop_server

    found = stop_server(build_settings().prefect.home.expanduser())
    console.print("Prefect server stopped" if found.server else "no Prefect server was running")
