"""Bundles: one file holding several documents becomes child documents, each a page range.

The signals and boundaries on words made here; the whole path (render, words, split, one
extraction per child, the store, reruns) on a bundle made of the sample documents' pages, on
SQLite and PostgreSQL, with the scripted backend (it answers every extraction with one record:
what is tested is which pages each document's requests read and what is stored).
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pypdfium2 as pdfium
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from pipeline.backends.scripted import ScriptedModel
from pipeline.cli import app
from pipeline.evidence.words import PageWords, Word
from pipeline.export.write import export_rows
from pipeline.reruns import locate, plan_rerun
from pipeline.runner import Outcome, process, register
from pipeline.settings import Settings
from pipeline.split import PageSignals, parse_parts, read_signals, split_at
from pipeline.split.ask import ask_model
from pipeline.split.boundaries import Boundary, decide_boundaries
from pipeline.split.parts import doubts
from pipeline.store.db import open_database, session_factory
from pipeline.store.models import Document, Extraction, Page
from pipeline.store.queries import Selection
from pipeline.types import Status

cli = CliRunner()
SAMPLES = Path(__file__).resolve().parent.parent / "sample_docs"
RECORD = {
    "invoice_number": "X-1",
    "issue_date": "2026-11-02",
    "currency": "EUR",
    "seller": {"name": "Someone"},
    "total": "10.00",
}


def words(page: int, *lines: tuple[str, int, int], height: int = 1000) -> PageWords:
    """A page whose lines are (text, top, text height) in a 700 x `height` px page."""
    items = []
    for line, (text, top, size) in enumerate(lines):
        left = 50
        for word in text.split():
            width = 12 * len(word)
            items.append(Word(word, (left, top, left + width, top + size), None, line))
            left += width + 10
    return PageWords(page, 700, height, 100, "text_layer", tuple(items))


def body(page: int, *lines: tuple[str, int, int]) -> PageWords:
    """Lines plus ordinary body text (so the page has a median line height to stand out of)."""
    filler = [(f"item {i} description quantity price", 400 + 30 * i, 14) for i in range(8)]
    return words(page, *lines, *filler)


# -- what the words say ------------------------------------------------------------------------


def test_page_markers_numbers_and_headings_are_read() -> None:
    first = read_signals(
        body(
            1,
            ("ACME GmbH", 40, 30),
            ("INVOICE", 120, 40),
            ("Invoice no. INV-2024-0058", 200, 14),
            ("Date 02.11.2026", 230, 14),
            ("Page 1 of 3", 960, 12),
        )
    )
    assert first.marker == (1, 3)
    assert first.number == "inv202458" and first.printed_number == "inv-2024-0058"
    assert first.titled and first.title == "invoice"
    french = read_signals(
        body(2, ("N° de facture F-2025-0412", 200, 14), ("Seite 2 von 2", 960, 12))
    )
    assert french.number == "f2025412" and french.marker == (2, 2)
    footer = read_signals(body(3, ("2/4", 970, 12)))
    assert footer.marker == (2, 4)
    dated = read_signals(body(4, ("Invoice no. 12.03.2024", 200, 14)))  # a date is no number
    assert dated.number is None and dated.marker is None and not dated.titled
    carried = read_signals(body(5, ("Continued on next page", 950, 12)))
    assert carried.continued and not carried.continues


def test_boundaries_follow_markers_numbers_and_separators() -> None:
    pages = [
        PageSignals(1, marker=(1, 2), number="a1"),
        PageSignals(2, marker=(2, 2), number="a1"),
        PageSignals(3, number="b7"),  # another invoice number, no marker
        PageSignals(4),  # nothing on it: continues b7
        PageSignals(5, blank=True),  # a separator sheet
        PageSignals(6, titled=True, title="invoice", letterhead=frozenset({"other"})),
        PageSignals(7, readable=False),  # not read: stays with the document before, unsure
    ]
    boundaries = decide_boundaries(pages)
    assert [(b.page, b.starts) for b in boundaries] == [
        (2, False),
        (3, True),
        (4, False),
        (6, True),
        (7, False),
    ]
    assert boundaries[0].confidence == 0.98 and boundaries[0].by == "marker"
    # page 2 was the last of 2 and page 3 has another number: both say so, either decides
    assert boundaries[1].confidence == 0.95 and boundaries[1].by in {"marker", "number"}
    assert boundaries[4].confidence < 0.8 and boundaries[4].by == "unreadable"
    split = split_at(7, {5}, boundaries)
    assert split.parts == ((1, 2), (3, 4), (6, 7)) and split.separators == (5,)
    assert not split.is_whole
    # every page in exactly one part or the separators
    covered = [p for a, b in split.parts for p in range(a, b + 1)] + list(split.separators)
    assert sorted(covered) == list(range(1, 8))
    # an unreadable page is unsure (the model is asked) but no review reason on its own
    assert doubts(split, (6, 7), 0.8) == ()
    # a heading under the same letterhead is unsure: a reason for the documents it touches
    same = [
        PageSignals(1, number="a1", letterhead=frozenset({"acme"})),
        PageSignals(2, titled=True, title="invoice", letterhead=frozenset({"acme"})),
    ]
    (unsure,) = decide_boundaries(same)
    assert unsure.starts and unsure.confidence == 0.75
    two = split_at(2, set(), [unsure])
    (reason,) = doubts(two, (1, 1), 0.8)
    assert reason.startswith("page split unsure: page 2 starts the next document? (confidence 0.75")
    assert doubts(two, (2, 2), 0.8)[0].startswith("page split unsure: page 2 starts this document?")


def test_a_blank_back_inside_a_document_stays_in_it() -> None:
    pages = [
        PageSignals(1, marker=(1, 2)),
        PageSignals(2, blank=True),  # the empty back of a duplex scan
        PageSignals(3, marker=(2, 2)),
        PageSignals(4, blank=True),
    ]
    split = split_at(4, {2, 4}, decide_boundaries(pages))
    assert split.is_whole and split.separators == ()
    (boundary,) = split.boundaries
    # the separator's vote was outweighed by the page marker, and that shows in the confidence
    assert not boundary.starts and 0.8 <= boundary.confidence < 0.98
    assert "blank sheet" in boundary.why


def test_person_given_parts_are_checked() -> None:
    assert parse_parts("1-2,3, 4-7", 7) == (((1, 2), (3, 3), (4, 7)), ())
    assert parse_parts("2-3,5", 6) == (((2, 3), (5, 5)), (1, 4, 6))
    for wrong, message in [
        ("1-2,2-3", "overlaps"),
        ("3,1", "comes before"),
        ("0-2", "pages run from 1 to 4"),
        ("1-5", "pages run from 1 to 4"),
        ("1-x", "not a page or a page range"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_parts(wrong, 4)


def test_the_model_decides_only_when_it_is_sure(settings: Settings, tmp_path: Path) -> None:
    from _seed import make_png

    from pipeline.types import PageImage

    png = make_png(tmp_path / "p.png", "page")
    page = PageImage(2, png, 200, 260, 100)
    unsure = Boundary(2, False, 0.7, "title", "heading 'invoice'")
    # the scripted backend reports no token log-probabilities: its answer is never "sure"
    model = ScriptedModel.from_replies(['{"page_role": "first_page"}'])
    kept = ask_model(unsure, page, model, settings)
    assert (kept.starts, kept.confidence, kept.by) == (False, 0.7, "title")
    assert "the model says first page (no probability), not sure enough" in kept.why
    (request,) = model.requests
    assert request.json_schema is not None
    assert request.json_schema["properties"]["page_role"]["enum"] == ["continuation", "first_page"]


# -- the whole path ----------------------------------------------------------------------------


def bundle(path: Path) -> Path:
    """invoice (1 page) | blank separator | two-page invoice | supplier form: 5 pages."""
    out = pdfium.PdfDocument.new()
    out.import_pages(pdfium.PdfDocument(SAMPLES / "invoice-born-digital.pdf"))
    out.new_page(595, 842)
    out.import_pages(pdfium.PdfDocument(SAMPLES / "invoice-two-page.pdf"))
    out.import_pages(pdfium.PdfDocument(SAMPLES / "form-supplier-registration.pdf"))
    buffer = io.BytesIO()
    out.save(buffer)
    path.write_bytes(buffer.getvalue())
    return path


@dataclass
class Bundled:
    """A bundle on disk, the scripted model that reads it, and the store it goes to."""

    path: Path
    model: ScriptedModel
    factory: sessionmaker[Session]

    def run(self, settings: Settings) -> list[Outcome]:
        registered = register(self.factory, self.path, settings)
        return process(self.factory, registered, settings, model=self.model)


def extract_bundle(settings: Settings, tmp_path: Path) -> Bundled:
    model = ScriptedModel(lambda request, number: json.dumps(RECORD), "scripted-bundles")
    factory = session_factory(open_database(settings.db_url.get_secret_value()))
    return Bundled(bundle(tmp_path / "post-room-scan.pdf"), model, factory)


@pytest.fixture
def bundle_settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        db_url=db_url,
        cache_dir=tmp_path / "cache",
        workers=1,
        schemas=["invoice"],
        model={"backend": "scripted"},
        tiling={"strategy": "anyres"},
        grounding={"enabled": False},
        duplicates={"enabled": False},
    )


def test_a_bundle_becomes_child_documents_each_extracted_on_its_own(
    bundle_settings: Settings, tmp_path: Path
) -> None:
    bundled = extract_bundle(bundle_settings, tmp_path)
    path, model, factory = bundled.path, bundled.model, bundled.factory
    outcomes = bundled.run(bundle_settings)

    assert [o.path for o in outcomes] == [
        f"{path} [pages 1]",
        f"{path} [pages 3-4]",
        f"{path} [pages 5]",
    ]
    assert all(o.did_work and o.status == "succeeded" for o in outcomes)
    # each document's requests read its own pages only; the separator sheet was never read
    read = sorted({r.page for r in model.requests if r.page is not None})
    assert read == [1, 3, 4, 5]
    with factory() as session:
        parent = session.scalars(select(Document).where(Document.parent_id.is_(None))).one()
        assert parent.split is not None
        assert parent.split["parts"] == [[1, 1], [3, 4], [5, 5]]
        assert parent.split["separators"] == [2]
        assert [(b["page"], b["starts"], b["by"]) for b in parent.split["boundaries"]] == [
            (3, True, "marker"),  # 'Page 1 of 2' on the two-page invoice
            (4, False, "marker"),
            (5, True, "marker"),
        ]
        assert parent.extractions == []  # the file itself is no document of its own
        children = session.scalars(
            select(Document).where(Document.parent_id == parent.id).order_by(Document.first_page)
        ).all()
        assert [(c.first_page, c.last_page, c.page_count) for c in children] == [
            (1, 1, 1),
            (3, 4, 2),
            (5, 5, 1),
        ]
        assert all(c.paths[0].path == parent.paths[0].path for c in children)
        pages = session.scalars(select(Page).where(Page.document_id == children[1].id)).all()
        assert sorted(p.number for p in pages) == [3, 4]  # the file's page numbers
        assert [len(c.extractions) for c in children] == [1, 1, 1]
        # exports name the file and the pages each record comes from
        rows = export_rows(session, Selection())
        assert [(r["document_name"], r["file_sha256"], r["file_pages"]) for r in rows] == [
            (path.name, parent.sha256, "1"),
            (path.name, parent.sha256, "3-4"),
            (path.name, parent.sha256, "5"),
        ]

    # a second run does nothing and makes nothing new
    again = bundled.run(bundle_settings)
    assert [o.did_work for o in again] == [False, False, False]
    with factory() as session:
        assert session.scalar(select(Document.id).order_by(Document.id.desc()).limit(1)) == (
            children[-1].id
        )

    # a rerun's listing names each document by its file and pages
    with factory() as session:
        plan = plan_rerun(session, Selection(), bundle_settings)
        listed = [u.name for u in plan.units] + [u.name for u, _ in plan.skipped]
    assert sorted(listed) == [f"{path.name} [pages {p}]" for p in ("1", "3-4", "5")]

    # a rerun of one child reads that child's pages only
    calls = len(model.requests)
    found = locate(factory, children[1].id, bundle_settings)
    assert not isinstance(found, str) and found.part == (3, 4)
    redone = process(factory, found, bundle_settings, model=model, redo=[Status.SUCCEEDED])
    assert [(o.path, o.did_work) for o in redone] == [(f"{path} [pages 3-4]", True)]
    assert {r.page for r in model.requests[calls:]} == {3, 4}
    with factory() as session:
        extraction = session.scalars(
            select(Extraction).where(Extraction.document_id == children[1].id)
        ).one()
        assert extraction.attempts == 2


def test_split_never_keeps_the_file_one_document(bundle_settings: Settings, tmp_path: Path) -> None:
    never = bundle_settings.model_copy(
        update={"split": bundle_settings.split.model_copy(update={"mode": "never"})}
    )
    bundled = extract_bundle(never, tmp_path)
    (outcome,) = bundled.run(never)
    assert outcome.path == str(bundled.path) and outcome.pages == 5
    with bundled.factory() as session:
        (document,) = session.scalars(select(Document)).all()
        assert document.split is None and len(document.extractions) == 1
    # turned on later, the file already extracted whole stays whole: no duplicate records
    (again,) = bundled.run(bundle_settings)
    factory = bundled.factory
    assert not again.did_work
    with factory() as session:
        assert len(session.scalars(select(Document)).all()) == 1


def test_a_person_corrects_the_split_and_only_changed_documents_are_redone(
    bundle_settings: Settings, tmp_path: Path
) -> None:
    bundled = extract_bundle(bundle_settings, tmp_path)
    path, model, factory = bundled.path, bundled.model, bundled.factory
    bundled.run(bundle_settings)
    db = ["--db", bundle_settings.db_url.get_secret_value()]

    shown = cli.invoke(app, ["split", path.name, *db])
    assert shown.exit_code == 0, shown.output
    assert "3 documents, pages 1,3-4,5 (split by auto)" in shown.output
    assert "separator sheets: 2" in shown.output
    assert "pages 3-4: invoice: succeeded" in shown.output
    assert "page 3: starts a document (0.98, marker:" in shown.output

    refused = cli.invoke(app, ["split", path.name, "--pages", "1,3-6", *db])
    assert refused.exit_code == 2 and "pages run from 1 to 5" in refused.output

    dry = cli.invoke(app, ["split", path.name, "--pages", "1,3,4-5", "--dry-run", "--json", *db])
    assert dry.exit_code == 0, dry.output
    change = json.loads(dry.output)["would_change"]
    assert change["before"] == "1,3-4,5" and change["pages"] == "1,3,4-5"
    assert [r["pages"] for r in change["removed"]] == ["3-4", "5"]
    assert change["removed"][0]["records"] == ["invoice: succeeded"]
    assert change["added"] == ["3", "4-5"]
    with factory() as session:  # nothing changed
        parent = session.scalars(select(Document).where(Document.parent_id.is_(None))).one()
        assert parent.split is not None and parent.split["by"] == "auto"

    done = cli.invoke(app, ["split", path.name, "--pages", "1,3,4-5", "--no-extract", *db])
    assert done.exit_code == 0, done.output
    with factory() as session:
        parent = session.scalars(select(Document).where(Document.parent_id.is_(None))).one()
        assert parent.split is not None and parent.split["by"] == "person"
        assert parent.split["parts"] == [[1, 1], [3, 3], [4, 5]]
        (replaced,) = parent.split["history"]
        assert replaced["replaced"]["parts"] == [[1, 1], [3, 4], [5, 5]]
        assert [r["pages"] for r in replaced["removed"]] == ["3-4", "5"]
        kept = session.scalars(select(Document).where(Document.parent_id == parent.id)).all()
        assert [(c.first_page, c.last_page) for c in kept] == [(1, 1)]  # its record stays

    calls = len(model.requests)
    outcomes = bundled.run(bundle_settings)
    assert [(o.path.rsplit(" ", 2)[-1], o.did_work) for o in outcomes] == [
        ("1]", False),
        ("3]", True),
        ("4-5]", True),
    ]
    assert sorted({r.page for r in model.requests[calls:]}) == [3, 4, 5]

    status = cli.invoke(app, ["status", "--json", *db])
    latest = sorted(r["document"] for r in json.loads(status.output)["latest"])
    assert latest == [f"{path.name} [pages {p}]" for p in ("1", "3", "4-5")]

    shown = cli.invoke(app, ["show", path.name, *db])
    assert shown.exit_code == 0, shown.output
    document = json.loads(shown.output)
    assert document["split"]["by"] == "person"
    assert [d["pages"] for d in document["documents"]] == ["1", "3", "4-5"]
    child = cli.invoke(app, ["show", document["documents"][2]["sha256"][:12], *db])
    assert json.loads(child.output)["part_of"]["pages"] == "4-5"

    # one document again: the children go, the file is extracted whole
    whole = cli.invoke(app, ["split", path.name, "--pages", "1-5", "--no-extract", *db])
    assert whole.exit_code == 0, whole.output
    (outcome,) = bundled.run(bundle_settings)
    assert outcome.path == str(path) and outcome.did_work and outcome.pages == 5


@pytest.mark.slow
def test_the_readme_commands_split_a_bundle_with_the_real_model_path(
    sqlite_url: str, prefect_api_url: str, shared_cache_dir: Path, tmp_path: Path
) -> None:
    """`docextract run` on a bundle with tiny-random (processor, tiling, generate() under the
    grammar), then `docextract split --pages` re-extracting the document that changed."""
    import os
    import subprocess
    import sys

    path = bundle(tmp_path / "post-room-scan.pdf")
    env = {
        **os.environ,
        "PREFECT_API_URL": prefect_api_url,
        "DOCEXTRACT_CACHE_DIR": str(shared_cache_dir),
        "HF_HUB_OFFLINE": "1",
    }
    env.pop("DOCEXTRACT_DB_URL", None)
    common = ["--model", "tiny-random", "--schema", "invoice", "--db", sqlite_url, "--json"]

    def docextract(*args: str) -> object:
        done = subprocess.run(
            [sys.executable, "-m", "pipeline", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            cwd=Path(__file__).resolve().parent.parent,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout)

    first = docextract("run", str(path), *common)
    assert isinstance(first, list)
    assert [(r["path"], r["did_work"]) for r in first] == [
        (f"{path} [pages 1]", True),
        (f"{path} [pages 3-4]", True),
        (f"{path} [pages 5]", True),
    ]
    changed = docextract("split", path.name, "--pages", "1,3-5", *common)
    assert isinstance(changed, dict)
    assert changed["changed"]["removed"][0]["pages"] == "3-4"
    assert [(r["path"], r["did_work"]) for r in changed["outcomes"]] == [
        (f"{path} [pages 1]", False),
        (f"{path} [pages 3-5]", True),
    ]


def test_run_split_option_sets_the_mode() -> None:
    from pipeline.cli.common import cli_overrides
    from pipeline.errors import ConfigError

    assert cli_overrides(split="never") == {"split": {"mode": "never"}}
    assert Settings(**cli_overrides(split="never")).split.mode == "never"
    with pytest.raises(ConfigError, match="choose auto or never"):
        cli_overrides(split="sometimes")


def test_the_review_desk_shows_a_documents_pages_of_the_file_and_corrects_the_split(
    bundle_settings: Settings, tmp_path: Path
) -> None:
    from starlette.testclient import TestClient

    from pipeline.review.app import create_app

    bundled = extract_bundle(bundle_settings, tmp_path)
    factory = bundled.factory
    bundled.run(bundle_settings)
    with factory() as session:
        child = session.scalars(select(Document).where(Document.first_page == 3)).one()
        extraction_id = child.extractions[0].id
    client = TestClient(create_app(bundle_settings, factory))

    queue = client.get("/?status=succeeded")
    assert "post-room-scan.pdf [pages 3-4]" in queue.text  # each document named by its pages
    page = client.get(f"/doc/{extraction_id}")
    assert page.status_code == 200
    assert "pages 3-4 of 5 of post-room-scan.pdf, split as 1,3-4,5 (by auto)" in page.text
    # its own pages only, numbered as in the file, served from the file's page cache
    assert re.findall(r'id="page-(\d+)"', page.text) == ["3", "4"]
    image = client.get(f"/doc/{extraction_id}/pages/4")
    assert image.status_code == 200 and image.content[:4] == b"\x89PNG"
    assert client.get(f"/doc/{extraction_id}/pages/1").status_code == 404

    form = {"pages": "1,3,4-5", "reviewer": "ann"}
    assert client.post(f"/doc/{extraction_id}/split", data=form).status_code == 403
    csrf = client.cookies["docextract_csrf"]
    refused = client.post(
        f"/doc/{extraction_id}/split", data={**form, "csrf": csrf, "pages": "1-9"}
    )
    assert refused.status_code == 400 and "pages run from 1 to 5" in refused.text
    done = client.post(f"/doc/{extraction_id}/split", data={**form, "csrf": csrf})
    assert done.status_code == 200
    assert "post-room-scan.pdf is now split as 1,3,4-5; removed: pages 3-4 (succeeded)" in done.text
    with factory() as session:
        parent = session.scalars(select(Document).where(Document.parent_id.is_(None))).one()
        assert parent.split is not None and parent.split["by"] == "person"
        assert "set by ann (review desk)" in parent.split["boundaries"][0]["why"]
        assert session.get(Extraction, extraction_id) is None  # its pages changed: redone


def test_two_workers_on_one_bundle_make_each_document_once(
    bundle_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The nightly run and a manual run on the same bundle at once (two workers: here two
    threads with a worker name each): one split, three child documents, each extracted by one
    worker."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from pipeline.store import repository

    monkeypatch.setattr(repository, "worker_name", lambda: f"w{threading.get_ident()}")

    def slow(request: object, number: int) -> str:
        time.sleep(0.2)  # both workers are in flight at once
        return json.dumps(RECORD)

    path = bundle(tmp_path / "post-room-scan.pdf")
    factory = session_factory(open_database(bundle_settings.db_url.get_secret_value()))

    def work() -> list[object]:
        model = ScriptedModel(slow, "scripted-bundles")
        registered = register(factory, path, bundle_settings)
        return list(process(factory, registered, bundle_settings, model=model))

    with ThreadPoolExecutor(2) as pool:
        outcomes = [o for f in [pool.submit(work), pool.submit(work)] for o in f.result()]
    worked = sorted(o.path for o in outcomes if o.did_work)  # type: ignore[attr-defined]
    assert worked == sorted({o.path for o in outcomes}), outcomes  # type: ignore[attr-defined]
    with factory() as session:
        children = session.scalars(select(Document).where(Document.parent_id.is_not(None))).all()
        assert sorted((c.first_page, c.last_page) for c in children) == [(1, 1), (3, 4), (5, 5)]
        extractions = session.scalars(select(Extraction)).all()
        assert len(extractions) == 3 and all(e.attempts == 1 for e in extractions)
