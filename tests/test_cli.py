"""Command-line checks that stop a run before any work: exit codes and messages."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from pipeline.cli import app

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
