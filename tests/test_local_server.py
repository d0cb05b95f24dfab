"""The background local Prefect server: one per home however many commands start at once, reused
by the next command, restarted when it died, stopped by `docextract server stop`, and never
started where the user configured a server. Every server here lives in a temporary home and is
stopped at teardown."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from flows import local_server
from pipeline.settings import PrefectSettings

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "sample_docs" / "invoice-born-digital.pdf"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def docextract(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )


@pytest.fixture
def config(tmp_path: Path) -> Iterator[PrefectSettings]:
    config = PrefectSettings(server="background", home=tmp_path / "prefect", port=free_port())
    yield config
    local_server.stop(config.home)


@pytest.fixture
def cli_env(config: PrefectSettings, tmp_path: Path, shared_cache_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DOCEXTRACT_"))}
    env.update(
        PREFECT_HOME=str(tmp_path / "client"),
        DOCEXTRACT_PREFECT__SERVER="background",
        DOCEXTRACT_PREFECT__HOME=str(config.home),
        DOCEXTRACT_PREFECT__PORT=str(config.port),
        DOCEXTRACT_DB_URL=f"sqlite:///{tmp_path / 'd.db'}",
        DOCEXTRACT_CACHE_DIR=str(shared_cache_dir),
        DOCEXTRACT_MODEL__BACKEND="scripted",
    )
    return env


def flow_run_names(server: local_server.LocalServer) -> list[str]:
    request = urllib.request.Request(
        f"{server.api_url}/flow_runs/filter",
        data=b"{}",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return [run["name"] for run in json.loads(response.read())]


@pytest.mark.slow
def test_one_server_is_started_reused_restarted_and_stopped(
    config: PrefectSettings, cli_env: dict[str, str]
) -> None:
    with ThreadPoolExecutor(2) as pool:  # two commands starting at once start one server
        first, second = pool.map(lambda _: local_server.ensure(config), range(2))
    assert first[0] == second[0] and sorted([first[1], second[1]]) == [False, True]
    server = first[0]
    assert server.port == config.port
    environment = Path(f"/proc/{server.pid}/environ").read_bytes()
    assert b"PREFECT_HOME=" + str(config.home).encode() in environment
    assert b"DOCEXTRACT_" not in environment  # the database URL stays with the commands
    assert local_server.status(config.home).state == "running"

    ran = docextract("run", str(SAMPLE), "--json", env=cli_env)  # reuses it, says where it is
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert f"Prefect UI: {server.url}" in ran.stderr
    assert local_server.ensure(config) == (server, False)
    assert len(flow_run_names(server)) == 1  # the run's history stays on the server

    os.kill(server.pid, signal.SIGKILL)  # a server that died ...
    os.waitpid(server.pid, 0)
    dead = docextract("server", "status", env=cli_env)
    assert dead.returncode == 1 and "not answering" in dead.stdout
    rerun = docextract("run", str(SAMPLE), "--json", env=cli_env)  # ... is restarted
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "started now" in rerun.stderr
    restarted = local_server.status(config.home).server
    assert restarted and restarted.pid != server.pid
    assert len(flow_run_names(restarted)) == 2  # same home, same history

    stopped = docextract("server", "stop", env=cli_env)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert not local_server._alive(restarted.pid)
    after = docextract("server", "status", "--json", env=cli_env)
    assert after.returncode == 1 and json.loads(after.stdout)["state"] == "stopped"


def test_a_configured_prefect_api_url_wins(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DOCEXTRACT_"))}
    env.update(
        PREFECT_HOME=str(tmp_path / "client"),
        PREFECT_API_URL="http://127.0.0.1:9/api",
        DOCEXTRACT_PREFECT__SERVER="background",
        DOCEXTRACT_PREFECT__HOME=str(tmp_path / "prefect"),
        PYTHONPATH=str(REPO),
    )
    code = (
        "from flows.prefect_env import connect; from pipeline.settings import Settings; "
        "print(connect(Settings().prefect))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "kind='external'" in result.stdout and "http://127.0.0.1:9/api" in result.stdout
    assert not (tmp_path / "prefect").exists()  # nothing started, nothing written


def test_status_of_a_home_without_a_server(tmp_path: Path) -> None:
    assert local_server.status(tmp_path).state == "stopped"
    (tmp_path / local_server.STATE_FILE).write_text(
        '{"pid": 999999999, "port": 1, "started_at": ""}'
    )
    assert local_server.status(tmp_path).state == "dead"
    assert local_server.stop(tmp_path).state == "dead"
    assert not (tmp_path / local_server.STATE_FILE).exists()
