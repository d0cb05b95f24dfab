"""Alembic migrations on SQLite and PostgreSQL: up from empty, from 0001 with data, down and up;
the models match the migrations; an out-of-date schema is refused with the command to run."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, select, text
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.store import repository as repo
from pipeline.store.db import (
    alembic_config,
    current_revision,
    head_revision,
    make_engine,
    session_factory,
)
from pipeline.store.models import Base, Extraction, ExtractionEvent, Run
from pipeline.types import Status

cli = CliRunner()


def schema_differences(engine: Engine) -> list[Any]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def test_db_upgrade_creates_the_schema_from_empty(db_url: str) -> None:
    result = cli.invoke(app, ["db", "upgrade", "--db", db_url])
    assert result.exit_code == 0, result.output
    engine = make_engine(db_url)
    assert f"schema revision none -> {head_revision(engine)}" in result.output
    assert current_revision(engine) == head_revision(engine) == "0005"
    assert schema_differences(engine) == []  # the models and the migrations agree
    again = cli.invoke(app, ["db", "upgrade", "--db", db_url])  # idempotent
    assert again.exit_code == 0 and "0005 -> 0005" in again.output


def seed_revision_0001(engine: Engine) -> None:
    """Rows as docextract 0001 wrote them (raw SQL: today's models have more columns)."""
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO documents (id, sha256, media_type, size_bytes, page_count, "
                "first_seen_at, last_seen_at) VALUES (1, :sha, 'application/pdf', 10, 1, "
                "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            ),
            {"sha": "ab" * 32},
        )
        connection.execute(
            text(
                "INSERT INTO extractions (id, document_id, schema_name, schema_version, model_id, "
                "prompt_version, status, error_category, error_message, record, review_reasons, "
                "errors, raw_outputs, provenance, timings, pages_total, pages_failed, "
                "image_tokens, input_tokens, output_tokens, model_calls, attempts, seconds, "
                "created_at, updated_at) VALUES (1, 1, 'invoice', '1.0', 'm', '1', 'failed', "
                "'model_error', 'boom', NULL, '[]', '[]', '[]', '{}', '{}', 1, 1, 5, 6, 7, 1, 1, "
                "0.5, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )
        connection.execute(
            text(
                "INSERT INTO extraction_events (extraction_id, at, status, attempt, "
                "review_reasons) VALUES (1, CURRENT_TIMESTAMP, 'failed', 1, '[]')"
            )
        )


def test_upgrade_from_0001_keeps_the_data_and_the_app_refuses_until_then(db_url: str) -> None:
    engine = make_engine(db_url)
    command.upgrade(alembic_config(engine), "0001")
    seed_revision_0001(engine)

    status = cli.invoke(app, ["status", "--db", db_url])
    assert status.exit_code == 3
    assert "'0001'" in status.output and "docextract db upgrade" in status.output

    upgraded = cli.invoke(app, ["db", "upgrade", "--db", db_url])
    assert upgraded.exit_code == 0 and "0001 -> 0005" in upgraded.output, upgraded.output
    assert schema_differences(engine) == []
    factory = session_factory(engine)
    with factory() as session:
        old = session.get(Extraction, 1)
        assert old is not None
        assert (old.status, old.error_message, old.input_tokens) == ("failed", "boom", 6)
        assert (old.cpu_seconds, old.gpu_seconds, old.field_confidence) == (None, None, None)
        event = session.scalars(select(ExtractionEvent)).one()
        assert event.pages_total is None and event.raw_outputs is None
    with factory.begin() as session:  # an old failed row can be rerun on the new schema
        unit = repo.UnitOfWork(1, "invoice", "1.0", "m", "1")
        again = repo.claim(session, unit, "w", lease=timedelta(hours=1), redo=[Status.FAILED])
        assert again is not None and again.attempts == 2
        assert repo.save_outcome(
            session, again.id, "w", repo.ExtractionOutcome("succeeded", record={})
        )
    assert cli.invoke(app, ["status", "--db", db_url]).exit_code == 0


def test_downgrade_to_base_and_up_again(db_url: str) -> None:
    engine = make_engine(db_url)
    config = alembic_config(engine)
    command.upgrade(config, "head")
    with session_factory(engine).begin() as session:
        repo.start_run(session, "run", {"files": 1}, deployment="nightly")
    command.downgrade(config, "0001")
    columns = {c["name"] for c in inspect(engine).get_columns("runs")}
    assert "deployment" not in columns and "kind" in columns
    command.downgrade(config, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    command.upgrade(config, "head")
    assert schema_differences(engine) == []
    with session_factory(engine)() as session:
        assert session.scalars(select(Run)).all() == []
