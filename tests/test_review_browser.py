"""The review desk in a real headless Chromium (Debian's `chromium`, driven by Playwright; no
browser is ever downloaded) against a live server started here: the queue, a document, a field
and its box both ways, a correction checked as typed, approve, reject, two clerks saving the same
document, and a document whose text is markup that must stay text.

Screenshots of each step go to tests/artifacts/review/ (ignored by git).
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from _review_seed import XSS_IMG, XSS_SCRIPT, invoice_record, seed_invoice
from sqlalchemy import select

from pipeline.review.app import create_app
from pipeline.settings import Settings
from pipeline.store.db import open_database, session_factory
from pipeline.store.models import Extraction, ExtractionEvent, Review

ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "review"
EVIL = XSS_SCRIPT + XSS_IMG


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail(
            "Debian's chromium is not installed: run scripts/setup (it installs the `chromium` "
            "package), or `apt-get install -y chromium` as root"
        )
    return found


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A seeded SQLite database and the desk serving it on a free 127.0.0.1 port."""
    folder = tmp_path_factory.mktemp("desk")
    settings = Settings(db_url=f"sqlite:///{folder / 'desk.db'}", cache_dir=folder / "cache")
    factory = session_factory(open_database(settings.db_url.get_secret_value()))
    inbox = folder / "inbox"
    docs = {
        "correct": seed_invoice(factory, settings, inbox, 1),
        "reject": seed_invoice(factory, settings, inbox, 2),
        "race": seed_invoice(factory, settings, inbox, 3),
        "evil": seed_invoice(
            factory,
            settings,
            inbox,
            4,
            record=invoice_record(4, seller=EVIL),
            reasons=[f"seller looks odd: {EVIL}"],
        ),
    }
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        create_app(settings, factory), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the desk did not start"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots in {ARTIFACTS}")
    yield {"url": f"http://127.0.0.1:{port}", "factory": factory, "docs": docs}
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    playwright_api = pytest.importorskip("playwright.sync_api")
    path = chromium()
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=path, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    # bypass_csp: the escaping must hold on its own (the CSP is a second wall), and Playwright's
    # wait_for_function evaluates strings, which the desk's CSP forbids.
    context = browser.new_context(viewport={"width": 1280, "height": 820}, bypass_csp=True)
    opened = context.new_page()
    opened.set_default_timeout(8000)
    dialogs: list[str] = []
    opened.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    opened.dialogs = dialogs
    yield opened
    context.close()
    assert dialogs == [], f"a dialog opened: {dialogs}"


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def row(factory: Any, extraction_id: int) -> Extraction:
    with factory() as session:
        found = session.get(Extraction, extraction_id)
        assert found is not None
        return found


def test_queue_document_field_box_correct_and_approve(desk: dict[str, Any], page: Any) -> None:
    doc = desk["docs"]["correct"]
    page.goto(desk["url"] + "/")
    assert page.locator("#queue tbody tr").count() == 4
    shot(page, "01-queue")
    page.locator(f'#queue tr[data-id="{doc.extraction_id}"] a.doc').click()
    page.wait_for_selector(".box.placed")
    total_box = page.locator('.box[data-field="total"]')
    page.locator('#fields input[data-path="total"]').click()
    assert "active" in total_box.get_attribute("class")
    shot(page, "02-field-selected")
    page.locator('.box[data-field="seller.name"]').click()  # a box selects its field
    assert "active" in page.locator('tr.field[data-field="seller.name"]').get_attribute("class")
    assert page.evaluate("document.activeElement.dataset.path") == "seller.name"

    page.locator('#fields input[data-path="total"]').fill("29.75")
    page.wait_for_function(
        "document.querySelector('#live-reasons').textContent.includes('all rules pass')"
    )
    page.locator("button.add[data-add='line_items']").click()  # a new row breaks the sum rule
    page.locator("table[data-list='line_items'] tbody tr:last-child [data-key='amount']").fill("3")
    page.wait_for_function(
        "document.querySelector('#live-reasons').textContent.includes('line items sum to')"
    )
    shot(page, "03-row-added")
    page.locator("table[data-list='line_items'] tbody tr:last-child button.del").click()
    page.wait_for_function(
        "document.querySelector('#live-reasons').textContent.includes('all rules pass')"
    )
    page.locator("#reviewer").fill("Ann Clerk")
    page.locator("#approve").click()
    page.wait_for_selector("#message.ok")
    assert "corrected" in page.locator("#message").inner_text()
    shot(page, "04-approved")

    saved = row(desk["factory"], doc.extraction_id)
    assert (saved.status, saved.record["total"], saved.review_reasons) == ("corrected", "29.75", [])
    assert len(saved.record["line_items"]) == 2
    with desk["factory"]() as session:
        review = session.scalars(
            select(Review).where(Review.extraction_id == doc.extraction_id)
        ).one()
        assert review.reviewer == "Ann Clerk" and review.diff == [
            {"path": "total", "before": "92.75", "after": "29.75"}
        ]
        history = session.scalars(
            select(ExtractionEvent.status).where(ExtractionEvent.extraction_id == doc.extraction_id)
        ).all()
        assert history[-1] == "corrected"
    page.goto(desk["url"] + "/")  # the reviewer's name is remembered
    page.goto(desk["url"] + f"/doc/{desk['docs']['reject'].extraction_id}")
    assert page.locator("#reviewer").input_value() == "Ann Clerk"


def test_reject_with_a_reason(desk: dict[str, Any], page: Any) -> None:
    doc = desk["docs"]["reject"]
    page.goto(desk["url"] + f"/doc/{doc.extraction_id}")
    page.locator("#reviewer").fill("Bob")
    page.locator("#reject").click()
    assert "Say why" in page.locator("#message").inner_text()
    page.locator("#reject-reason").fill("not our invoice")
    page.locator("#reject").click()
    page.wait_for_selector("#message.ok")
    shot(page, "05-rejected")
    saved = row(desk["factory"], doc.extraction_id)
    assert saved.status == "rejected"
    with desk["factory"]() as session:
        review = session.scalars(
            select(Review).where(Review.extraction_id == doc.extraction_id)
        ).one()
        assert (review.action, review.reason, review.reviewer) == (
            "rejected",
            "not our invoice",
            "Bob",
        )


def test_two_clerks_saving_the_same_document(desk: dict[str, Any], browser: Any) -> None:
    doc = desk["docs"]["race"]
    url = desk["url"] + f"/doc/{doc.extraction_id}"
    first, second = (browser.new_context(bypass_csp=True).new_page() for _ in range(2))
    for clerk, name in ((first, "Ann"), (second, "Bob")):
        clerk.goto(url)
        clerk.locator("#reviewer").fill(name)
    first.locator('#fields input[data-path="total"]').fill("29.75")
    first.locator("#approve").click()
    first.wait_for_selector("#message.ok")
    second.locator('#fields input[data-path="total"]').fill("30.00")
    second.locator("#approve").click()
    second.wait_for_selector("#message.stale")
    assert "changed since you opened it" in second.locator("#message").inner_text()
    assert second.locator('#fields input[data-path="total"]').input_value() == "30.00"  # kept
    shot(second, "06-stale-save-refused")
    saved = row(desk["factory"], doc.extraction_id)
    assert saved.record["total"] == "29.75"
    with desk["factory"]() as session:
        reviews = session.scalars(
            select(Review).where(Review.extraction_id == doc.extraction_id)
        ).all()
        assert [r.reviewer for r in reviews] == ["Ann"]
    first.context.close()
    second.context.close()


def test_markup_in_a_document_stays_text(desk: dict[str, Any], page: Any) -> None:
    doc = desk["docs"]["evil"]
    page.goto(desk["url"] + f"/doc/{doc.extraction_id}")
    page.wait_for_selector(".box.placed")
    assert page.locator('#fields input[data-path="seller.name"]').input_value() == EVIL
    assert page.locator("#stored-reasons li").first.inner_text() == f"seller looks odd: {EVIL}"
    assert page.locator("img[src='x']").count() == 0
    assert page.evaluate("document.querySelectorAll('script').length") == 2  # data + desk.js
    page.locator('#fields input[data-path="issue_date"]').fill(EVIL)
    page.wait_for_selector("#errors li")  # too long for the schema: the message is text too
    page.locator('.box[data-field="seller.name"]').click()
    shot(page, "07-markup-is-text")
    page.goto(desk["url"] + "/?reason=" + "seller looks odd")
    assert page.locator("#queue tbody tr").count() == 1
    assert EVIL in page.locator("#queue").inner_text()
    assert page.locator("img[src='x']").count() == 0
