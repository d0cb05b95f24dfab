"""Duplicate invoices after extraction, on SQLite and PostgreSQL: the same invoice re-rendered,
re-numbered, with a changed total, and true non-duplicates from the same seller; the pairs
`docextract duplicates` lists; a pair marked distinct clears the reason for good."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _seed import make_png
from sqlalchemy import select
from typer.testing import CliRunner

from pipeline.backends.scripted import ScriptedModel
from pipeline.cli import app
from pipeline.duplicates import edit_distance, invoice_key, normalize_number
from pipeline.duplicates.keys import normalize_name
from pipeline.runner import process, register
from pipeline.settings import Settings
from pipeline.store.db import open_database, session_factory
from pipeline.store.models import Document, DocumentPath, DuplicateKey, Extraction
from pipeline.types import Status

cli = CliRunner()
ORIGINAL = {
    "invoice_number": "INV-2024-5847",
    "issue_date": "2026-11-02",
    "currency": "EUR",
    "seller": {"name": "ACME GmbH", "tax_id": "DE 123 456 789"},
    "total": "1234.00",
}
REASON = (
    "possible duplicate of a-original.png (invoice INV-2024-5847 from ACME GmbH, "
    "1,234.00 EUR, 2026-11-02)"
)


def test_keys_are_normalized() -> None:
    assert normalize_number("INV-2024-0058") == normalize_number("inv 2024 58") == "inv202458"
    assert normalize_number("INV/2024/058") == "inv202458" and normalize_number(" - ") is None
    assert normalize_name("ACME GmbH") == normalize_name("Acme") == "acme"
    assert normalize_name("Müller & Söhne KG") == "mullersohne"
    assert edit_distance("inv20245847", "inv20245848") == 1
    key = invoice_key({**ORIGINAL, "iban": "DE89 3704 0044 0532 0130 00"})
    assert key is not None
    assert key.sellers == ("vat:DE123456789", "iban:DE89370400440532013000", "name:acme")
    assert key.label == "invoice INV-2024-5847 from ACME GmbH, 1,234.00 EUR, 2026-11-02"
    assert invoice_key({"invoice_number": "1", "total": "5"}) is None  # no seller: no key


def run(settings: Settings, path: Path, record: dict[str, Any]) -> Extraction:
    model = ScriptedModel(lambda request, number: json.dumps(record), "scripted-invoices")
    factory = session_factory(open_database(settings.db_url.get_secret_value()))
    process(
        factory,
        register(factory, path, settings),
        settings,
        model=model,
        redo=[Status.NEEDS_REVIEW, Status.SUCCEEDED],
    )
    with factory() as session:
        document = session.scalars(
            select(Document).join(DocumentPath).where(DocumentPath.name == path.name)
        ).one()
        extraction = session.scalars(
            select(Extraction).where(Extraction.document_id == document.id)
        ).one()
        session.expunge_all()
    return extraction


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        db_url=db_url,
        cache_dir=tmp_path / "cache",
        workers=1,
        model={"backend": "scripted"},
        tiling={"strategy": "anyres"},
        # the scripted answers are not printed on these label pages: vouching would flag them
        grounding={"enabled": False},
    )


def test_duplicate_invoices_go_to_review_naming_the_earlier_one(
    settings: Settings, tmp_path: Path
) -> None:
    first = run(settings, make_png(tmp_path / "a-original.png", "invoice 5847"), ORIGINAL)
    assert first.status == "succeeded", first.review_reasons
    # the same invoice again, other bytes (re-scanned), its number read with other separators
    again = run(
        settings,
        make_png(tmp_path / "b-rescan.png", "invoice 5847 rescanned"),
        {**ORIGINAL, "invoice_number": "INV 2024 5847", "seller": {"name": "Acme"}},
    )
    assert again.status == "needs_review" and again.review_reasons == [REASON]
    # re-numbered (a reminder with a new number), same total, three days later: a near match
    renumbered = run(
        settings,
        make_png(tmp_path / "c-reminder.png", "reminder 5848"),
        {**ORIGINAL, "invoice_number": "INV-2024-5848", "issue_date": "2026-11-05"},
    )
    assert renumbered.review_reasons[0].startswith("possible duplicate of a-original.png")
    # the same number with a changed total (a corrected invoice): a person must look
    corrected = run(
        settings,
        make_png(tmp_path / "d-corrected.png", "corrected 5847"),
        {**ORIGINAL, "total": "1299.00"},
    )
    assert corrected.status == "needs_review"
    assert corrected.review_reasons[0].startswith("possible duplicate of a-original.png")
    # true non-duplicates from the same seller: next month's invoice, and a near number with
    # a total 10% off
    for name, record in {
        "e-next-month.png": {
            **ORIGINAL,
            "invoice_number": "INV-2024-6120",
            "total": "980.00",
            "issue_date": "2026-12-15",
        },
        "f-other-order.png": {**ORIGINAL, "invoice_number": "INV-2024-5849", "total": "1357.40"},
    }.items():
        other = run(settings, make_png(tmp_path / name, name), record)
        assert other.status == "succeeded", (name, other.review_reasons)

    listed = cli.invoke(app, ["duplicates", "--json", "--db", settings.db_url.get_secret_value()])
    assert listed.exit_code == 0, listed.output
    pairs = {(p["document"], p["original"], p["kind"]) for p in json.loads(listed.output)}
    assert ("b-rescan.png", "a-original.png", "same_number") in pairs
    assert ("c-reminder.png", "a-original.png", "near") in pairs
    assert ("d-corrected.png", "a-original.png", "same_number") in pairs
    assert not any(p[0].startswith(("e-", "f-")) for p in pairs)
    assert not any(p[0] == "a-original.png" for p in pairs)  # the original is never flagged


def test_a_pair_marked_distinct_is_cleared_and_not_raised_again(
    settings: Settings, tmp_path: Path
) -> None:
    run(settings, make_png(tmp_path / "a-original.png", "invoice 5847"), ORIGINAL)
    b = make_png(tmp_path / "b-rescan.png", "invoice 5847 again")
    assert run(settings, b, ORIGINAL).review_reasons == [REASON]
    url = settings.db_url.get_secret_value()
    marked = cli.invoke(
        app, ["duplicates", "--distinct", "b-rescan.png", "a-original.png", "--db", url]
    )
    assert marked.exit_code == 0 and "1 record(s) cleared" in marked.output, marked.output
    factory = session_factory(open_database(url))
    with factory() as session:
        cleared = session.scalars(select(Extraction).order_by(Extraction.id)).all()[-1]
        assert cleared.status == "succeeded" and cleared.review_reasons == []
        assert "marked distinct" in (cleared.events[-1].error_message or "")
    again = run(settings, b, ORIGINAL)  # a rerun of the same document: the decision stands
    assert again.status == "succeeded" and again.review_reasons == []
    listed = cli.invoke(app, ["duplicates", "--since", "1d", "--db", url])
    assert listed.exit_code == 0 and "b-rescan.png" in listed.output


def test_keys_are_kept_per_seller_identity_and_replaced_on_rerun(
    settings: Settings, tmp_path: Path
) -> None:
    path = make_png(tmp_path / "a-original.png", "invoice 5847")
    run(settings, path, {**ORIGINAL, "iban": "DE89 3704 0044 0532 0130 00"})
    run(settings, path, ORIGINAL)  # rerun (redo): the keys of the earlier attempt are replaced
    factory = session_factory(open_database(settings.db_url.get_secret_value()))
    with factory() as session:
        sellers = sorted(session.scalars(select(DuplicateKey.seller_key)))
    assert sellers == ["name:acme", "vat:DE123456789"]
