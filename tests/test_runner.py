"""One document end to end against the store, with the scripted backend: statuses, passwords,
secrets kept out of the database, faults recorded instead of raised."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SHARED
from PIL import Image
from pydantic import SecretStr
from sqlalchemy import select

from pipeline.backends.scripted import ScriptedModel, empty_record_json
from pipeline.errors import ModelError
from pipeline.runner import process, register
from pipeline.settings import Settings
from pipeline.store.db import open_database, session_factory
from pipeline.store.models import Extraction, ExtractionEvent
from pipeline.types import VisionRequest

ENCRYPTED = SHARED / "corpus" / "robustness" / "pypdf-r4-aes-user-password.pdf"
PASSWORD = "asdfzxcv"  # from the corpus manifest

needs_corpus = pytest.mark.skipif(
    not ENCRYPTED.exists(), reason=f"robustness corpus not found at {ENCRYPTED.parent}"
)


def empty_answers(request: VisionRequest, number: int) -> str:
    return empty_record_json(request.json_schema)


def run_one(path: Path, settings: Settings, model: ScriptedModel) -> dict[str, object]:
    factory = session_factory(open_database(settings.db_url.get_secret_value()))
    outcome = process(factory, register(factory, path, settings), settings, model=model)
    assert len(outcome) == 1
    return outcome[0].to_json()


def stored_text(settings: Settings) -> str:
    """Everything stored about extractions, as one string (to look for leaked secrets)."""
    factory = session_factory(open_database(settings.db_url.get_secret_value()))
    with factory() as session:
        rows = [
            {c.name: getattr(row, c.name) for c in type(row).__table__.columns}
            for model in (Extraction, ExtractionEvent)
            for row in session.scalars(select(model))
        ]
    return json.dumps(rows, default=str)


def png(tmp_path: Path) -> Path:
    path = tmp_path / "scan.png"
    Image.new("RGB", (600, 800), "white").save(path)
    return path


def test_a_clean_image_ends_with_a_stored_status(tmp_path: Path, settings: Settings) -> None:
    row = run_one(png(tmp_path), settings, ScriptedModel(empty_answers))
    assert row["status"] == "needs_review"  # the empty record misses the required fields
    assert "invoice_number" in str(row["reason"])


@needs_corpus
def test_encrypted_pdf_without_password_is_password_required(
    tmp_path: Path, settings: Settings
) -> None:
    row = run_one(ENCRYPTED, settings, ScriptedModel(empty_answers))
    assert row["status"] == "failed"
    factory = session_factory(open_database(settings.db_url.get_secret_value()))
    with factory() as session:
        assert session.scalars(select(Extraction.error_category)).one() == "password_required"


@needs_corpus
def test_passwords_file_opens_the_pdf_and_the_password_is_never_stored(
    tmp_path: Path, settings: Settings
) -> None:
    passwords = tmp_path / "passwords.json"
    passwords.write_text(json.dumps({"*": ["wrong-one", PASSWORD]}))
    settings.passwords_file = passwords
    row = run_one(ENCRYPTED, settings, ScriptedModel(empty_answers))
    assert row["status"] == "needs_review" and row["pages"] == 1
    assert PASSWORD not in stored_text(settings)


@needs_corpus
def test_wrong_passwords_say_the_file_did_not_help(tmp_path: Path, settings: Settings) -> None:
    passwords = tmp_path / "passwords.json"
    passwords.write_text(json.dumps({ENCRYPTED.name: "nope"}))
    settings.passwords_file = passwords
    row = run_one(ENCRYPTED, settings, ScriptedModel(empty_answers))
    assert row["status"] == "failed" and "passwords file" in str(row["reason"])
    assert "nope" not in stored_text(settings)


def test_model_failure_on_every_request_is_recorded_as_model_error(
    tmp_path: Path, settings: Settings
) -> None:
    def broken(request: VisionRequest, number: int) -> object:
        return ModelError("CUDA error: device-side assert triggered")

    row = run_one(png(tmp_path), settings, ScriptedModel(broken))  # type: ignore[arg-type]
    assert row["status"] == "failed" and "device-side assert" in str(row["reason"])
    factory = session_factory(open_database(settings.db_url.get_secret_value()))
    with factory() as session:
        assert session.scalars(select(Extraction.error_category)).one() == "model_error"


def test_a_bug_is_recorded_as_internal_error_and_the_batch_goes_on(
    tmp_path: Path, settings: Settings
) -> None:
    def buggy(request: VisionRequest, number: int) -> str:
        raise ZeroDivisionError("division by zero")

    row = run_one(png(tmp_path), settings, ScriptedModel(buggy))
    assert row["status"] == "failed" and "ZeroDivisionError" in str(row["reason"])


def test_a_dropped_connection_at_save_is_retried(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    import pipeline.steps as steps

    real_save, failures = steps.repo.save_outcome, []

    def flaky_save(*args: object, **kwargs: object) -> bool:
        if not failures:
            failures.append(1)
            raise OperationalError(
                "UPDATE extractions", {}, Exception("server closed the connection")
            )
        return real_save(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(steps.repo, "save_outcome", flaky_save)
    monkeypatch.setattr(steps, "DB_RETRY_DELAY_S", 0.01)
    row = run_one(png(tmp_path), settings, ScriptedModel(empty_answers))
    assert failures and row["status"] == "needs_review"
    factory = session_factory(open_database(settings.db_url.get_secret_value()))
    with factory() as session:
        assert session.scalars(select(Extraction.status)).one() == "needs_review"


def test_postgres_connections_killed_mid_document_do_not_lose_the_result(
    tmp_path: Path, settings: Settings, postgres_url: str
) -> None:
    from sqlalchemy import create_engine, text

    settings.db_url = SecretStr(postgres_url)
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")

    def kill_connections_then_answer(request: VisionRequest, number: int) -> str:
        with admin.connect() as connection:  # every other session of this database dies
            connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
        return empty_record_json(request.json_schema)

    row = run_one(png(tmp_path), settings, ScriptedModel(kill_connections_then_answer))
    admin.dispose()
    assert row["status"] == "needs_review"
    factory = session_factory(open_database(postgres_url))
    with factory() as session:
        assert session.scalars(select(Extraction.status)).one() == "needs_review"


def test_an_unchanged_needs_review_document_shows_its_reasons(
    tmp_path: Path, settings: Settings
) -> None:
    path = png(tmp_path)
    first = run_one(path, settings, ScriptedModel(empty_answers))
    second = run_one(path, settings, ScriptedModel(empty_answers))
    assert first["status"] == second["status"] == "needs_review"
    assert not second["did_work"]
    assert "invoice_number" in str(second["reason"]) and "more)" in str(second["reason"])
