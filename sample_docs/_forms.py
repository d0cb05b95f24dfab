"""Forms of the sample set: labelled fields filled in, checkboxes ticked or not, signatures.

Each form is a list of `Entry` (a FormField plus how it is printed when that differs from the
normalized truth, e.g. `12,450,000` for the number 12450000); the drawing walks the same list,
so the truth and the page cannot drift apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from _render import Canvas, Pdf, Sample, scanned_pdf

from schemas.form import Form, FormField


@dataclass(frozen=True)
class Entry:
    field: FormField
    printed: str = ""  # the value as written on the page, when not the truth's own spelling

    @property
    def text(self) -> str:
        return self.printed or self.field.value or ""


def entry(label: str, kind: str, value: str | None = None, *, checked: bool | None = None) -> Entry:
    """A field whose truth is `value` normalized by the schema, printed as `value`."""
    field = FormField(label=label, kind=kind, value=value, checked=checked)  # type: ignore[arg-type]
    return Entry(field, value or "")


def _scribble(width: float, height: float, loops: int = 5) -> list[tuple[float, float]]:
    """A signature-like curve in a width x height box, as points (same units)."""
    points = []
    for step in range(121):
        t = step / 120
        x = width * t
        y = height * (0.5 + 0.35 * math.sin(loops * 2 * math.pi * t) * math.cos(3 * t))
        points.append((x, y))
    return points


# --- a born-digital supplier registration (fpdf2) -------------------------------------------------

SUPPLIER = (
    entry("Company name", "text", "Nordhavn Marine Supplies ApS"),
    entry("VAT number", "text", "DK31845120"),
    entry("Date of incorporation", "date", "12.09.2011"),
    entry("Number of employees", "number", "148"),
    entry("Annual turnover (EUR)", "number", "12,450,000"),
    entry("Contact e-mail", "text", "procurement@nordhavn-marine.example"),
    entry("ISO 9001 certified", "checkbox", checked=True),
    entry("ISO 14001 certified", "checkbox", checked=False),
    entry("Accepts orders by EDI", "checkbox", checked=True),
    entry("Preferred payment terms", "text", "30 days net"),
    entry("Signature", "signature", checked=True),
    entry("Date signed", "date", "03.02.2025"),
)


def supplier_registration() -> Sample:
    """A one-page A4 form with a text layer: typed values in Courier, ticked boxes as X."""
    form = Form(title="Supplier Registration Form", fields=[e.field for e in SUPPLIER])

    def render() -> bytes:
        pdf = Pdf(form.title or "", "Procurement", "Form PR-07 (2024-10)", "Page {page} of {pages}")
        pdf.add_page()
        pdf.set_font("helvetica", "B", 18)
        pdf.cell(0, 10, form.title or "")
        pdf.set_xy(20, 32)
        pdf.set_font("helvetica", "", 9)
        pdf.cell(0, 5, "Please complete in block letters and return to procurement@example.")
        y = 46.0
        for item in SUPPLIER:
            _pdf_entry(pdf, item, y)
            y += 16 if item.field.kind == "signature" else 13
        return pdf.to_bytes()

    return Sample("form-supplier-registration.pdf", (form,), render)


def _pdf_entry(pdf: Pdf, item: Entry, y: float) -> None:
    field = item.field
    pdf.set_draw_color(60)
    if field.kind == "checkbox":
        pdf.rect(20, y, 5, 5)
        if field.checked:
            pdf.line(20.8, y + 0.8, 24.2, y + 4.2)
            pdf.line(24.2, y + 0.8, 20.8, y + 4.2)
        pdf.set_xy(28, y)
        pdf.set_font("helvetica", "", 11)
        pdf.cell(0, 5, field.label or "")
        return
    pdf.set_xy(20, y)
    pdf.set_font("helvetica", "", 11)
    pdf.cell(60, 6, field.label or "")
    pdf.line(80, y + 6, 190, y + 6)
    if field.kind == "signature":
        points = [(82 + x, y - 4 + v) for x, v in _scribble(45, 9)]
        pdf.set_draw_color(20, 40, 120)
        pdf.polyline(points)
        return
    pdf.set_xy(82, y)
    pdf.set_font("courier", "B", 11)
    pdf.cell(0, 6, item.text)


# --- a scanned travel expense claim (Pillow) -----------------------------------------------------

EXPENSES = (
    entry("Employee name", "text", "Marta Kowalczyk"),
    entry("Employee no.", "text", "E-20417"),
    entry("Department", "text", "Field Service"),
    entry("Purpose of trip", "text", "Customer site visit, Gdańsk"),
    entry("Departure date", "date", "14.10.2025"),
    entry("Return date", "date", "16.10.2025"),
    entry("Kilometres driven", "number", "612"),
    entry("Total claimed (PLN)", "number", "1 284,60"),
    entry("Receipts attached", "checkbox", checked=True),
    entry("Advance received", "checkbox", checked=False),
    entry("Private car used", "checkbox", checked=True),
    entry("Employee signature", "signature", checked=True),
    entry("Approved by (manager)", "signature", checked=False),
)


def expense_claim() -> Sample:
    """A one-page A4 form drawn at 200 DPI, values in a monospace 'typewriter', then scanned."""
    form = Form(title="Travel Expense Claim", fields=[e.field for e in EXPENSES])

    def render() -> bytes:
        page = Canvas(210, 297, 200)
        page.text(20, 18, form.title or "", 20, bold=True)
        page.text(20, 29, "Finance department · submit within 30 days of return", 9)
        page.rule(20, 190, 35, 0.8)
        y = 44.0
        for item in EXPENSES:
            _canvas_entry(page, item, y)
            y += 19 if item.field.kind == "signature" else 14
        page.text(20, 270, "Form FIN-12 · keep a copy for your records", 8)
        return scanned_pdf(page.image, seed=2417, angle=0.5, title="Scan expense claim")

    return Sample("form-expense-claim.pdf", (form,), render)


def _canvas_entry(page: Canvas, item: Entry, y: float) -> None:
    field = item.field
    if field.kind == "checkbox":
        page.draw.rectangle(
            [page.px(20), page.px(y), page.px(25), page.px(y + 5)], width=3, outline=(30, 30, 30)
        )
        if field.checked:
            for start, end in (
                ((20.8, y + 0.8), (24.2, y + 4.2)),
                ((24.2, y + 0.8), (20.8, y + 4.2)),
            ):
                page.draw.line(
                    [tuple(page.px(v) for v in start), tuple(page.px(v) for v in end)],
                    fill=(20, 20, 20),
                    width=4,
                )
        page.text(29, y + 0.3, field.label or "", 11)
        return
    page.text(20, y, field.label or "", 11)
    page.rule(78, 190, y + 6.5, 0.6)
    if field.kind == "signature":
        if field.checked:
            points = [(page.px(80 + x), page.px(y - 5 + v)) for x, v in _scribble(40, 10, 4)]
            page.draw.line(points, fill=(25, 45, 130), width=4)
        return
    face = page.family
    page.family = "DejaVuSansMono"
    page.text(80, y - 0.5, item.text, 11.5, bold=True)
    page.family = face
