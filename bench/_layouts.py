"""Born-digital page layouts that are hard for an ink measure of which way is up, made with
fpdf2 in a few milliseconds: for bench/orientation.py and tests/test_pages_orientation.py.

- `overhead-table`: the page `bench/overhead.py` generates (the one the old ink measure turned
  upside down with confidence 0.91): a title and 35 lines of widgets, digits and g/q/y.
- `mono-table`: a dense monospaced table of codes and amounts.
- `numbers-right`: right-aligned columns of numbers under all-caps headings.
- `caps-headings`: all-caps headings over short paragraphs.
- `boxed-form`: a form of labelled boxes, most of them empty.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from fpdf import FPDF

sys.path.insert(0, str(Path(__file__).resolve().parent))

from overhead import make_inbox


def overhead_table(path: Path) -> None:
    make_inbox(path.parent, 1, 1)
    (path.parent / "doc000.pdf").rename(path)


def mono_table(path: Path) -> None:
    pdf = _pdf("Courier", 9)
    pdf.cell(0, 6, "STOCK LIST 2024-Q3   WAREHOUSE 7", new_x="LMARGIN", new_y="NEXT")
    for row in range(60):
        line = (
            f"{row + 1:04d}  SKU-{7000 + row * 37:06d}  BOX {row % 9 + 1:2d}  "
            f"{(row * 131) % 997:5d} PCS  {(row * 7.25) % 400:9.2f} EUR"
        )
        pdf.cell(0, 4, line, new_x="LMARGIN", new_y="NEXT")
    pdf.output(str(path))


def numbers_right(path: Path) -> None:
    pdf = _pdf("Helvetica", 10)
    pdf.set_font("Helvetica", "B", 11)
    for heading in ("ACCOUNT", "Q1", "Q2", "Q3", "TOTAL"):
        pdf.cell(36, 7, heading, align="R")
    pdf.ln()
    pdf.set_font("Helvetica", size=10)
    for row in range(40):
        values = [(row * 977 + k * 131) % 99_999 / 7 for k in range(4)]
        pdf.cell(36, 6, f"{4000 + row * 10}", align="R")
        for value in values:
            pdf.cell(36, 6, f"{value:,.2f}", align="R")
        pdf.ln()
    pdf.output(str(path))


def caps_headings(path: Path) -> None:
    pdf = _pdf("Helvetica", 10)
    for section in range(6):
        pdf.set_font("Helvetica", "B", 14)
        pdf.cell(0, 9, f"SECTION {section + 1}: TERMS AND CONDITIONS OF DELIVERY", new_x="LMARGIN")
        pdf.ln()
        pdf.set_font("Helvetica", size=10)
        pdf.multi_cell(
            0,
            5,
            "The supplier delivers the goods to the address given in the order. Payment "
            "is due within 30 days of the invoice date; a discount of 2% applies if paid "
            "within 10 days. Quantities and prices are subject to the written confirmation.",
        )
        pdf.ln(3)
    pdf.output(str(path))


def boxed_form(path: Path) -> None:
    pdf = _pdf("Helvetica", 9)
    pdf.set_font("Helvetica", "B", 13)
    pdf.cell(0, 10, "SUPPLIER REGISTRATION FORM", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=9)
    labels = ("Company name", "VAT ID", "IBAN", "Street", "Postcode", "City", "Country")
    labels += ("Contact person", "Phone", "E-mail", "Signature", "Date")
    for row, label in enumerate(labels):
        y = 30 + row * 18
        pdf.text(20, y, label)
        pdf.rect(20, y + 2, 170, 10)
        if row % 3 == 0:
            pdf.text(23, y + 9, "ACME Supplies GmbH" if row == 0 else f"DE{812345670 + row}")
    pdf.output(str(path))


def _pdf(font: str, size: int) -> FPDF:
    pdf = FPDF(format="A4")
    pdf.add_page()
    pdf.set_font(font, size=size)
    return pdf


LAYOUTS: dict[str, Callable[[Path], None]] = {
    "overhead-table": overhead_table,
    "mono-table": mono_table,
    "numbers-right": numbers_right,
    "caps-headings": caps_headings,
    "boxed-form": boxed_form,
}


def make_layouts(folder: Path) -> list[Path]:
    """Each layout as `folder/<name>.pdf`."""
    paths = []
    for name, make in LAYOUTS.items():
        path = folder / f"{name}.pdf"
        make(path)
        paths.append(path)
    return paths
