"""Command-line checks that stop a run before any work: exit codes and messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.store.db import open_database

runner = CliRunner()


def test_a_missing_passwords_file_is_a_configuration_error(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "run",
            str(tmp_path),
            "--passwords",
            str(tmp_path / "nope.json"),
            "--db",
            f"sqlite:///{tmp_path / 'x.db'}",
            "--backend",
            "scripted",
        ],
    )
    assert result.exit_code == 2
    assert "cannot read the passwords file" in result.output


def test_a_malformed_passwords_file_is_refused_without_quoting_it(tmp_path: Path) -> None:
    secret_file = tmp_path / "passwords.json"
    secret_file.write_text('{"a.pdf": "hunter2",')
    result = runner.invoke(
        app,
        [
            "run",
            str(tmp_path),
            "--passwords",
            str(secret_file),
            "--db",
            f"sqlite:///{tmp_path / 'x.db'}",
            "--backend",
            "scripted",
        ],
    )
    assert result.exit_code == 2
    assert "not valid JSON" in result.output and "hunter2" not in result.output


def test_an_unknown_backend_lists_the_known_ones(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["run", str(tmp_path), "--backend", "nope", "--db", f"sqlite:///{tmp_path / 'x.db'}"]
    )
    assert result.exit_code == 2
    assert "Unknown backend 'nope'" in result.output and "transformers" in result.output


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://etl:hunter2@127.0.0.1/x", "write 'postgresql://' instead"),
        ("mysql://etl:hunter2@127.0.0.1/x", "supports SQLite"),
        ("postgresql://etl:hunter2@127.0.0.1:notaport/x", "the port is not a number"),
        ("postgresql+psycopg2://etl:hunter2@127.0.0.1/x", "driver is not installed"),
    ],
)
def test_an_unsupported_database_url_is_a_one_line_configuration_error(
    url: str, expected: str
) -> None:
    for command in (["status"], ["db", "upgrade"], ["export", "--out", "x.jsonl"]):
        result = runner.invoke(app, [*command, "--db", url])
        assert result.exit_code == 2, (command, result.output)
        assert expected in result.output and "hunter2" not in result.output
        assert "Traceback" not in result.output


def test_a_custom_schema_module_that_raises_on_import_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "broken_models_cli.py").write_text("raise RuntimeError('no licence key')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    result = runner.invoke(app, ["schemas", "--schema", "broken_models_cli:Receipt"])
    assert result.exit_code == 2, result.output
    assert "RuntimeError: no licence key" in result.output


def test_an_export_to_a_path_that_cannot_be_written_is_a_configuration_error(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    open_database(url)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = runner.invoke(app, ["export", "--out", str(blocker / "out.jsonl"), "--db", url])
    assert result.exit_code == 2, result.output
    assert "cannot write the export" in " ".join(result.output.split())


@pytest.mark.parametrize(
    "command", [["status"], ["show", "abcdef"], ["export", "--out", "x.jsonl"], ["rerun"]]
)
def test_reading_commands_on_a_missing_sqlite_file_create_nothing(
    tmp_path: Path, command: list[str]
) -> None:
    missing = tmp_path / "typo" / "docextract.db"
    result = runner.invoke(app, [*command, "--db", f"sqlite:///{missing}"])
    assert result.exit_code == 3, result.output
    assert "does not exist" in result.output
    assert not missing.exists() and not missing.parent.exists()


def test_status_on_an_empty_database_says_it_is_empty(db_url: str) -> None:
    from sqlalchemy import create_engine, inspect

    if db_url.startswith("sqlite"):
        create_engine(db_url).connect().close()  # an empty SQLite file
    result = runner.invoke(app, ["status", "--db", db_url])
    assert result.exit_code == 0, result.output
    assert "is empty" in " ".join(result.output.split()) and "revision" not in result.output
    assert inspect(create_engine(db_url)).get_table_names() == []  # nothing created
    exported = runner.invoke(app, ["export", "--out", "x.jsonl", "--db", db_url])
    assert exported.exit_code == 3 and "is empty" in " ".join(exported.output.split())


def test_zero_workers_is_refused_by_the_option(tmp_path: Path) -> None:
    for command in (["run", str(tmp_path)], ["rerun"], ["serve", "--inbox", str(tmp_path)]):
        result = runner.invoke(app, [*command, "--workers", "0"])
        assert result.exit_code == 2, (command, result.output)
        assert "Invalid value for '--workers'" in result.output, result.output


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("tiny-randm", "Unknown model 'tiny-randm'"),
        ("./no-such-checkpoint", "does not exist"),
        ("some-org/never-downloaded-model", "not in the local Hugging Face cache"),
    ],
)
def test_a_mistyped_model_fails_at_once_and_writes_nothing(
    tmp_path: Path, model: str, expected: str
) -> None:
    import time

    db = tmp_path / "x.db"
    started = time.monotonic()
    result = runner.invoke(app, ["run", str(tmp_path), "--model", model, "--db", f"sqlite:///{db}"])
    assert time.monotonic() - started < 30  # was 47 s of hub retries; torch import included
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert expected in message and "tiny-random" in message  # the aliases are listed
    assert not db.exists()


def test_show_says_a_hash_prefix_needs_six_characters(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    open_database(url)
    result = runner.invoke(app, ["show", "ab12c", "--db", url])
    assert result.exit_code == 1
    assert "at least 6 characters" in result.output


def test_auto_is_among_the_known_schemas(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["run", str(tmp_path), "--schema", "invoce", "--backend", "scripted"]
    )
    assert result.exit_code == 2
    assert "'auto'" in result.output
    listed = runner.invoke(app, ["schemas", "--json"])
    assert "auto" in [row["name"] for row in json.loads(listed.output)]


def test_every_time_on_screen_has_one_format() -> None:
    from datetime import UTC, datetime

    from pipeline.cli.output import local_time

    naive = datetime(2026, 11, 27, 2, 0, 5)  # SQLite: UTC, naive
    aware = naive.replace(tzinfo=UTC)  # PostgreSQL
    assert local_time(naive) == local_time(aware) == local_time(aware.isoformat())
    assert len(local_time(naive)) == 19 and "T" not in local_time(naive)


def test_tables_honour_columns_keep_names_whole_and_reasons_on_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import io

    from rich.console import Console

    from pipeline.cli.common import output_width
    from pipeline.cli.output import print_outcomes
    from pipeline.runner import Outcome

    monkeypatch.setenv("COLUMNS", "100")
    assert output_width() is None  # rich reads COLUMNS
    monkeypatch.delenv("COLUMNS")
    assert output_width() == 160  # a file or CI log without COLUMNS
    name = "invoice-2026-11-27-acme-industrial.pdf"
    reasons = "line 3: amount 721.50 != quantity 7.5 x unit price 95.00 (tolerance 0.01) (+11 more)"
    rows = [
        Outcome(f"/in/{name}", "ab", "invoice", "needs_review", reasons, 2, 1.5, True),
        Outcome("/in/b.pdf", "cd", "invoice", "succeeded", None, 1, 0.0, False),
    ]
    console = Console(width=100, file=io.StringIO())
    print_outcomes(console, rows)
    lines = console.file.getvalue().splitlines()  # type: ignore[attr-defined]
    assert max(len(line) for line in lines) <= 100
    assert sum(name in line for line in lines) == 1  # whole, on one line
    assert len([line for line in lines if line.startswith("│")]) == 2  # one line per row
    assert "unchanged" in lines[-3]


def test_without_schema_documents_are_routed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No --schema means `auto` (a mixed inbox is not read as invoices), unless
    DOCEXTRACT_SCHEMAS says otherwise."""
    monkeypatch.setenv("DOCEXTRACT_DB_URL", f"sqlite:///{tmp_path / 'x.db'}")
    args = ["serve", "--inbox", str(tmp_path), "--backend", "scripted", "--dry-run"]
    nightly = json.loads(runner.invoke(app, args).output)[0]
    assert nightly["parameters"]["overrides"]["schemas"] == ["auto"]
    monkeypatch.setenv("DOCEXTRACT_SCHEMAS", '["invoice"]')
    nightly = json.loads(runner.invoke(app, args).output)[0]
    assert "schemas" not in nightly["parameters"]["overrides"]


def test_status_counts_failures_by_category_and_show_has_calls_and_cpu(db_url: str) -> None:
    from datetime import timedelta

    from pipeline.store import repository as repo
    from pipeline.store.db import session_factory

    factory = session_factory(open_database(db_url))
    with factory.begin() as session:
        document = repo.register_document(session, Path("/in/a.pdf"), "cd" * 32, 10, None)
        unit = repo.UnitOfWork(document.id, "invoice", "1.1", "m", "p1")
        extraction = repo.claim(session, unit, "w", lease=timedelta(hours=1))
        assert extraction is not None
        fields = {"status": "failed", "error_category": "render_timeout", "error_message": "slow"}
        repo.save_outcome(
            session, extraction.id, "w", repo.ExtractionOutcome(**fields, model_calls=3)
        )
    result = runner.invoke(app, ["status", "--db", db_url])
    assert result.exit_code == 0, result.output
    assert "failed by error category" in result.output and "render_timeout" in result.output
    shown = json.loads(runner.invoke(app, ["show", "cdcdcd", "--db", db_url]).output)
    (record,) = shown["extractions"]
    assert record["model_calls"] == 3 and "cpu_seconds" in record
