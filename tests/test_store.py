"""The store on SQLite and PostgreSQL: schema creation, documents, claims, history."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text

from pipeline.errors import StoreError
from pipeline.store import repository as repo
from pipeline.store.db import current_revision, head_revision, open_database, session_factory
from pipeline.store.models import Document, Extraction, ExtractionEvent
from pipeline.types import Status

LEASE = timedelta(hours=1)


def unit(document_id: int, model_id: str = "m") -> repo.UnitOfWork:
    return repo.UnitOfWork(document_id, "invoice", "1.0", model_id, "1")


def new_document(factory, name: str = "a.pdf", sha: str = "ab" * 32) -> int:  # type: ignore[no-untyped-def]
    with factory.begin() as session:
        return repo.register_document(session, Path(name), sha, 10, "application/pdf").id


def test_empty_database_gets_the_schema(db_url: str) -> None:
    engine = open_database(db_url)
    assert current_revision(engine) == head_revision(engine)


def test_outdated_database_is_refused_with_the_command_to_run(db_url: str) -> None:
    engine = open_database(db_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'old'"))
    with pytest.raises(StoreError, match="docextract db upgrade"):
        open_database(db_url)


def test_unreachable_database_names_it_without_the_password() -> None:
    with pytest.raises(StoreError, match="Cannot connect") as info:
        open_database("postgresql+psycopg://user:hunter2@127.0.0.1:1/nowhere")
    assert "hunter2" not in str(info.value)


def test_same_content_twice_is_one_document_with_two_paths(db_url: str) -> None:
    factory = session_factory(open_database(db_url))
    first = new_document(factory, "inbox/a.pdf")
    second = new_document(factory, "other/copy-of-a.pdf")
    assert first == second
    with factory() as session:
        document = session.get(Document, first)
        assert document is not None
        assert sorted(p.name for p in document.paths) == ["a.pdf", "copy-of-a.pdf"]
        assert session.scalar(select(Document).where(Document.id != first)) is None


def test_a_claimed_unit_cannot_be_claimed_again(db_url: str) -> None:
    factory = session_factory(open_database(db_url))
    doc = new_document(factory)
    with factory.begin() as session:
        assert repo.claim(session, unit(doc), "w1", lease=LEASE) is not None
    with factory.begin() as session:
        assert repo.claim(session, unit(doc), "w2", lease=LEASE) is None
    with factory.begin() as session:  # a new model id is a different unit of work
        assert repo.claim(session, unit(doc, "other-model"), "w2", lease=LEASE) is not None


def test_an_expired_claim_is_taken_over(db_url: str) -> None:
    factory = session_factory(open_database(db_url))
    doc = new_document(factory)
    with factory.begin() as session:
        repo.claim(session, unit(doc), "dead-worker", lease=LEASE)
    with factory.begin() as session:
        assert repo.claim(session, unit(doc), "w2", lease=timedelta(seconds=-1)) is not None
    with factory.begin() as session:  # the dead worker's late result is not written
        extraction = repo.current_extraction(session, unit(doc))
        assert extraction is not None
        assert not repo.save_outcome(
            session, extraction.id, "dead-worker", repo.ExtractionOutcome("succeeded")
        )
        assert extraction.claimed_by == "w2"


def test_final_units_are_not_redone_unless_asked(db_url: str) -> None:
    factory = session_factory(open_database(db_url))
    doc = new_document(factory)
    with factory.begin() as session:
        extraction = repo.claim(session, unit(doc), "w1", lease=LEASE)
        assert extraction is not None
        assert repo.save_outcome(
            session,
            extraction.id,
            "w1",
            repo.ExtractionOutcome("failed", error_category="model_error", error_message="boom"),
        )
    with factory.begin() as session:
        assert repo.claim(session, unit(doc), "w1", lease=LEASE) is None
    with factory.begin() as session:
        again = repo.claim(session, unit(doc), "w1", lease=LEASE, redo=[Status.FAILED])
        assert again is not None and again.attempts == 2
        assert repo.save_outcome(
            session, again.id, "w1", repo.ExtractionOutcome("succeeded", record={"total": "1"})
        )
    with factory() as session:
        rows = session.scalars(select(Extraction)).all()
        assert len(rows) == 1 and rows[0].status == "succeeded"
        history = [
            (e.status, e.error_category)
            for e in session.scalars(select(ExtractionEvent).order_by(ExtractionEvent.id))
        ]
        assert history == [
            ("running", None),
            ("failed", "model_error"),
            ("running", None),
            ("succeeded", None),
        ]


def test_release_puts_a_claim_back_to_pending(db_url: str) -> None:
    factory = session_factory(open_database(db_url))
    doc = new_document(factory)
    with factory.begin() as session:
        extraction = repo.claim(session, unit(doc), "w1", lease=LEASE)
        assert extraction is not None
        assert repo.release(session, extraction.id, "w1", "configuration error")
    with factory.begin() as session:
        assert repo.claim(session, unit(doc), "w2", lease=LEASE) is not None


def test_find_documents_by_hash_prefix_or_name(sqlite_url: str) -> None:
    factory = session_factory(open_database(sqlite_url))
    doc = new_document(factory, "inbox/bill.pdf", sha="cd" * 32)
    with factory() as session:
        assert [d.id for d in repo.find_documents(session, "cdcdcd")] == [doc]
        assert [d.id for d in repo.find_documents(session, "bill.pdf")] == [doc]
        assert repo.find_documents(session, "cd") == []  # too short to be a hash prefix
