"""sample_docs/: the generator is byte-deterministic, the committed files are current, and each
document carries its ground truth (text layer, page split, legibility) as its JSON says.

Ground truth: `NAME.json` beside `NAME.ext`, {"document": "NAME.ext", "records": {schema: record}}.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from schemas import get_schema
from schemas.form import Form
from schemas.invoice import Invoice
from schemas.table import Table
from schemas.types import parse_amount

SAMPLE_DOCS = Path(__file__).resolve().parents[1] / "sample_docs"
GENERATOR = SAMPLE_DOCS / "generate.py"
TRUTHS = sorted(SAMPLE_DOCS.glob("*.json"))
INVOICE_TRUTHS = sorted(SAMPLE_DOCS.glob("invoice-*.json"))
DOCUMENTS = sorted(p for p in SAMPLE_DOCS.iterdir() if p.suffix in (".pdf", ".png"))
BORN_DIGITAL = ["invoice-born-digital.pdf", "invoice-two-page.pdf"]

needs_poppler = pytest.mark.skipif(
    shutil.which("pdftotext") is None, reason="poppler-utils (pdftotext, pdfinfo) not installed"
)


def generate(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(GENERATOR), "--out", str(out), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fresh")
    result = generate(out)
    assert result.returncode == 0, result.stderr
    return out


def records(document: str) -> dict[str, dict]:
    return json.loads((SAMPLE_DOCS / document).with_suffix(".json").read_text())["records"]


def truth(document: str) -> Invoice:
    return Invoice.model_validate(records(document)["invoice"])


def pdftotext(pdf: Path, page: int | None = None) -> str:
    pages = ["-f", str(page), "-l", str(page)] if page else []
    result = subprocess.run(
        ["pdftotext", "-layout", *pages, str(pdf), "-"], capture_output=True, text=True, check=True
    )
    return " ".join(result.stdout.split())  # whitespace collapsed: layout gaps, line breaks


def printed_amounts(text: str) -> set[Decimal]:
    """Every number-like token of `text` read as an amount (1,234.56 / 1.234,56 / 1'234.56)."""
    amounts = set()
    for token in re.findall(r"\d[\d.,']*\d", text):
        with contextlib.suppress(ValueError):  # dates like 06.05.2025 are not amounts
            amounts.add(parse_amount(token))
    return amounts


def pdfinfo(pdf: Path) -> dict[str, str]:
    result = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True)
    return dict(line.split(":", 1) for line in result.stdout.splitlines() if ":" in line)


def test_generation_is_byte_deterministic(fresh: Path, tmp_path: Path) -> None:
    again = generate(tmp_path)
    assert again.returncode == 0, again.stderr
    names = sorted(p.name for p in fresh.iterdir())
    assert names == sorted(p.name for p in tmp_path.iterdir())
    assert len(names) >= 26
    for name in names:
        assert (fresh / name).read_bytes() == (tmp_path / name).read_bytes(), name


def test_committed_files_equal_a_fresh_generation(fresh: Path) -> None:
    stale = [
        p.name
        for p in fresh.iterdir()
        if not (SAMPLE_DOCS / p.name).is_file()
        or (SAMPLE_DOCS / p.name).read_bytes() != p.read_bytes()
    ]
    assert not stale, f"stale sample docs {stale}: run python sample_docs/generate.py"


def test_check_flags_a_changed_file(fresh: Path, tmp_path: Path) -> None:
    shutil.copytree(fresh, tmp_path, dirs_exist_ok=True)
    changed = tmp_path / "invoice-born-digital.json"
    changed.write_bytes(changed.read_bytes() + b"\n")
    (tmp_path / "invoice-photo.png").unlink()
    result = generate(tmp_path, "--check")
    assert result.returncode == 1
    assert "invoice-born-digital.json" in result.stderr
    assert "invoice-photo.png" in result.stderr
    assert "invoice-scanned.pdf" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in fresh.iterdir() if p.name != "invoice-photo.png"
    )  # --check writes nothing


def test_sample_docs_stay_small() -> None:
    size = sum(p.stat().st_size for p in SAMPLE_DOCS.iterdir() if p.is_file())
    assert size < 3_000_000


def test_the_set_covers_every_built_in_schema_and_each_document_has_truth() -> None:
    assert sorted(p.stem for p in DOCUMENTS) == sorted(p.stem for p in TRUTHS)
    schemas = {name for path in TRUTHS for name in json.loads(path.read_text())["records"]}
    assert schemas == {"invoice", "form", "table", "chart"}


@pytest.mark.parametrize("path", TRUTHS, ids=lambda p: p.name)
def test_truth_is_valid_without_review_reasons(path: Path) -> None:
    data = json.loads(path.read_text())
    assert (SAMPLE_DOCS / data["document"]).is_file()
    assert Path(data["document"]).stem == path.stem
    for name, raw in data["records"].items():
        record = get_schema(name).model_validate(raw)
        assert record.review_reasons() == [], (name, record.review_reasons())
        assert record.model_dump(mode="json") == raw  # exactly the schema's JSON form


@pytest.mark.parametrize("path", INVOICE_TRUTHS, ids=lambda p: p.name)
def test_invoice_truth_has_its_line_item_table(path: Path) -> None:
    data = json.loads(path.read_text())["records"]
    invoice, table = Invoice.model_validate(data["invoice"]), Table.model_validate(data["table"])
    assert invoice.line_items and invoice.tax_lines and invoice.amount_due is not None
    assert len(table.rows) == len(invoice.line_items)
    descriptions = [row[table.columns.index(_description(table))] for row in table.rows]
    assert descriptions == [item.description for item in invoice.line_items]


def _description(table: Table) -> str:
    return next(
        c for c in table.columns if c.lower() in ("description", "bezeichnung", "désignation")
    )


@needs_poppler
@pytest.mark.parametrize("document", BORN_DIGITAL)
def test_text_layer_holds_the_truth(document: str) -> None:
    invoice, text = truth(document), pdftotext(SAMPLE_DOCS / document)
    assert invoice.invoice_number in text
    assert invoice.iban in text
    for item in invoice.line_items:
        assert item.description in text
    assert {invoice.total, invoice.subtotal, invoice.amount_due} <= printed_amounts(text)


@needs_poppler
def test_french_invoice_prints_the_discount_in_parentheses() -> None:
    invoice, text = (
        truth("invoice-fr-discount.pdf"),
        pdftotext(SAMPLE_DOCS / "invoice-fr-discount.pdf"),
    )
    assert invoice.invoice_number in text and invoice.iban in text
    assert all(item.description in text for item in invoice.line_items)
    discount = invoice.line_items[-1]
    assert discount.amount == Decimal("-150.00") and "(150,00)" in text
    assert parse_amount("(150,00)") == discount.amount
    assert "4 117,80 €" in text and invoice.total == Decimal("4117.80")


@needs_poppler
@pytest.mark.parametrize("document", ["table-price-list.pdf", "table-shipments-two-page.pdf"])
def test_table_text_layer_holds_every_cell(document: str) -> None:
    table, text = (
        Table.model_validate(records(document)["table"]),
        pdftotext(SAMPLE_DOCS / document),
    )
    assert len(table.rows) >= 38 and len(table.columns) == 6
    for row in table.rows:
        for cell in row:
            assert cell and cell in text, cell
    for note in table.notes:
        assert note in text


@needs_poppler
def test_two_page_table_continues_under_a_repeated_header() -> None:
    pdf = SAMPLE_DOCS / "table-shipments-two-page.pdf"
    table = Table.model_validate(records("table-shipments-two-page.pdf")["table"])
    assert pdfinfo(pdf)["Pages"].strip() == "2"
    first, second = pdftotext(pdf, 1), pdftotext(pdf, 2)
    ids = [row[1] for row in table.rows]
    on_first, on_second = [i for i in ids if i in first], [i for i in ids if i in second]
    assert on_first and on_second and on_first + on_second == ids  # once each, in order
    assert all(column in second for column in table.columns)  # the header is repeated


@needs_poppler
def test_form_text_layer_holds_labels_and_values() -> None:
    pdf = SAMPLE_DOCS / "form-supplier-registration.pdf"
    form, text = Form.model_validate(records(pdf.name)["form"]), pdftotext(pdf)
    assert form.title and form.title in text
    for field in form.fields:
        assert field.label and field.label in text
    assert form.get("Annual turnover (EUR)").value == "12450000" and "12,450,000" in text
    assert form.get("Date of incorporation").value == "2011-09-12" and "12.09.2011" in text
    kinds = {f.kind for f in form.fields}
    assert kinds == {"text", "number", "date", "checkbox", "signature"}
    assert [f.checked for f in form.fields if f.kind == "checkbox"] == [True, False, True]


@needs_poppler
def test_scanned_pdf_is_a_single_a4_image_without_text_layer() -> None:
    pdf = SAMPLE_DOCS / "invoice-scanned.pdf"
    assert pdftotext(pdf) == ""
    info = pdfinfo(pdf)
    assert info["Pages"].strip() == "1"
    assert "595.44 x 842.04" in info["Page size"]  # A4 at 200 DPI: 1654 x 2339 px
    images = subprocess.run(["pdfimages", "-list", str(pdf)], capture_output=True, text=True)
    assert re.search(r"\b1654\s+2339\s+gray\b.*\bjpeg\b.*\b200\s+200\b", images.stdout)


@needs_poppler
def test_two_page_pdf_splits_line_items_across_pages() -> None:
    pdf, invoice = SAMPLE_DOCS / "invoice-two-page.pdf", truth("invoice-two-page.pdf")
    assert pdfinfo(pdf)["Pages"].strip() == "2"
    first, second = pdftotext(pdf, 1), pdftotext(pdf, 2)
    on_first = [i.description for i in invoice.line_items if i.description in first]
    on_second = [i.description for i in invoice.line_items if i.description in second]
    assert on_first and on_second
    assert on_first + on_second == [i.description for i in invoice.line_items]  # once, in order
    assert "Description" in second  # the column header is repeated
    assert invoice.total in printed_amounts(second) and invoice.total not in printed_amounts(first)


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract is not installed")
@pytest.mark.parametrize(
    "document", ["invoice-scanned.pdf", "invoice-photo.png", "invoice-uk-scanned.pdf"]
)
def test_images_are_legible(document: str, tmp_path: Path) -> None:
    image = SAMPLE_DOCS / document
    if image.suffix == ".pdf":
        render = ["pdftoppm", "-r", "200", "-gray", "-singlefile", str(image), str(tmp_path / "p")]
        subprocess.run(render, check=True)
        image = tmp_path / "p.pgm"
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}  # threads only slow tesseract down on 2 cores
    text = subprocess.run(
        ["tesseract", str(image), "-"], capture_output=True, text=True, check=True, env=env
    ).stdout
    invoice = truth(document)
    assert invoice.invoice_number in text
    assert invoice.total in printed_amounts(text)


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract is not installed")
def test_chart_values_are_legible() -> None:
    from schemas.chart import Chart

    chart = Chart.model_validate(records("chart-revenue-bar.png")["chart"])
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    image = str(SAMPLE_DOCS / "chart-revenue-bar.png")
    text = subprocess.run(  # --psm 11: sparse text, as labels on a chart are
        ["tesseract", image, "-", "--psm", "11"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout
    assert chart.title and chart.title in text
    highest = chart.highest()
    assert highest is not None and (highest.label, highest.value) == ("Q4", Decimal("18.2"))
    assert {p.value for p in chart.points()} <= printed_amounts(text)
