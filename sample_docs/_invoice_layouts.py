"""Invoice layouts: each draws an `Invoice` (the ground truth) plus a `Style` into file bytes.

Every value printed comes from the Invoice; the Style holds only what the schema does not: number
and date formats, captions, the VAT rate of each line, contact and bank lines.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from _render import Canvas, Column, NumberFormat, Pdf, address_lines

from schemas.invoice import Invoice
from schemas.table import Table


@dataclass(frozen=True)
class Labels:
    """Printed captions, one set per language. `tax` takes `{rate}` and `{base}`."""

    title: str = "INVOICE"
    number: str = "Invoice no."
    issue_date: str = "Invoice date"
    due_date: str = "Due date"
    po: str = "PO number"
    currency: str = "Currency"
    bill_to: str = "Bill to"
    ship_to: str = "Ship to"
    position: str = "#"
    description: str = "Description"
    quantity: str = "Qty"
    unit_price: str = "Unit price"
    rate: str = "VAT"
    amount: str = "Amount"
    subtotal: str = "Subtotal"
    tax: str = "VAT {rate}% on {base}"
    total: str = "Total"
    paid: str = "Paid"
    amount_due: str = "Amount due"
    terms: str = "Terms"
    tax_id: str = "VAT no."
    buyer_tax_id: str = "Customer VAT no."
    page: str = "Page {page} of {pages}"
    continued: str = "Continued on next page"
    closing: str = "Thank you for your business!"


@dataclass(frozen=True)
class Style:
    fmt: NumberFormat
    date: Callable[[date], str]
    labels: Labels = Labels()
    rates: tuple[Decimal, ...] = ()  # VAT rate of each line, for the rate column and tax bases
    contact: tuple[str, ...] = ()  # printed under the seller: phone, e-mail, web
    bank: str = ""  # bank name and BIC, printed with the IBAN
    footer: str = ""  # company registration line
    ship_to: str = ""  # name and address on one line, where the goods went (not in the schema)


def _tax_rows(invoice: Invoice, style: Style) -> list[tuple[str, str]]:
    """Caption and printed amount of each tax line; the base is the sum of lines at that rate."""
    rows, fmt = [], style.fmt
    for tax in invoice.tax_lines:
        pairs = zip(invoice.line_items, style.rates, strict=True)
        base = sum((item.amount for item, rate in pairs if rate == tax.rate), Decimal(0))
        caption = style.labels.tax.format(rate=fmt.plain(tax.rate), base=fmt.money(base))
        rows.append((caption, fmt.money(tax.amount)))
    return rows


def _total_rows(invoice: Invoice, style: Style) -> list[tuple[str, str, bool]]:
    """Caption, printed amount and boldness of the totals block, top to bottom."""
    lab, money = style.labels, style.fmt.money
    rows = [(lab.subtotal, money(invoice.subtotal), False)]
    rows += [(caption, amount, False) for caption, amount in _tax_rows(invoice, style)]
    rows.append((lab.total, money(invoice.total), True))
    if invoice.amount_due != invoice.total:
        rows.append((lab.paid, money(invoice.amount_due - invoice.total), False))
    rows.append((lab.amount_due, money(invoice.amount_due), True))
    return rows


# --- born-digital A4, fpdf2 core fonts; breaks pages between line items ---------------------------

PDF_BOTTOM = 270.0  # mm; lower rows would run into the footer
PDF_ROW = 6.0


def pdf_invoice(invoice: Invoice, style: Style) -> bytes:
    """A born-digital A4 invoice with a text layer; long tables continue on further pages."""
    seller = invoice.seller
    pdf = Pdf(f"Invoice {invoice.invoice_number}", seller.name, style.footer, style.labels.page)
    pdf.running_header = f"{seller.name}  |  {style.labels.number} {invoice.invoice_number}"
    pdf.add_page()
    _pdf_parties_and_facts(pdf, invoice, style)
    _pdf_line_items(pdf, invoice, style)
    _pdf_totals_and_payment(pdf, invoice, style)
    return pdf.to_bytes()


def _pdf_parties_and_facts(pdf: Pdf, invoice: Invoice, style: Style) -> None:
    lab, seller, buyer = style.labels, invoice.seller, invoice.buyer
    pdf.set_font("helvetica", "B", 16)
    pdf.cell(110, 8, seller.name)
    pdf.set_font(size=20, style="B")
    pdf.cell(0, 8, lab.title, align="R")
    pdf.set_font(size=9, style="")
    lines = [*address_lines(seller.address), f"{lab.tax_id} {seller.tax_id}", *style.contact]
    for number, line in enumerate(lines):
        pdf.set_xy(20, 28 + 4.2 * number)
        pdf.cell(110, 4.2, line)

    pdf.set_xy(20, 62)
    pdf.set_font(size=8, style="B")
    pdf.cell(80, 5, lab.bill_to.upper())
    buyer_lines = [buyer.name, *address_lines(buyer.address), f"{lab.tax_id} {buyer.tax_id}"]
    for number, line in enumerate(buyer_lines):
        pdf.set_xy(20, 67 + 4.8 * number)
        pdf.set_font(size=10, style="B" if number == 0 else "")
        pdf.cell(90, 4.8, line)
    facts = [
        (lab.number, invoice.invoice_number),
        (lab.issue_date, style.date(invoice.issue_date)),
        (lab.due_date, style.date(invoice.due_date)),
        (lab.po, invoice.purchase_order),
        (lab.currency, invoice.currency),
    ]
    for number, (caption, value) in enumerate(facts):
        pdf.set_xy(118, 62 + 5.5 * number)
        pdf.set_font(size=10, style="")
        pdf.cell(32, 5.5, caption)
        pdf.set_font(style="B")
        pdf.cell(40, 5.5, value, align="R")


def _pdf_line_items(pdf: Pdf, invoice: Invoice, style: Style) -> None:
    """The line-item table from y = 100 mm; rows that would reach the footer go on a new page,
    under a repeated column header."""
    lab = style.labels
    columns, rows = _pdf_table(invoice, style)

    def column_header(y: float) -> None:
        pdf.set_xy(20, y)
        pdf.set_fill_color(228, 232, 238)
        pdf.rect(20, y, 170, 7, style="F")
        pdf.set_font(size=9, style="B")
        pdf.row(columns, [c.title for c in columns], 7)
        pdf.set_font(size=10, style="")

    column_header(100)
    for cells in rows:
        if pdf.get_y() + PDF_ROW > PDF_BOTTOM:
            pdf.set_font(size=8, style="I")
            pdf.cell(0, 5, lab.continued, align="R")
            pdf.add_page()
            column_header(34)
        pdf.row(columns, cells, PDF_ROW)
        pdf.set_draw_color(215)
        pdf.line(20, pdf.get_y(), 190, pdf.get_y())


def _pdf_table(invoice: Invoice, style: Style) -> tuple[list[Column], list[list[str]]]:
    """The line-item table as printed: its columns and the text of every cell."""
    lab, fmt = style.labels, style.fmt
    columns = [
        Column(lab.position, 9),
        Column(lab.description, 86),
        Column(lab.quantity, 15, "R"),
        Column(lab.unit_price, 24, "R"),
        Column(lab.rate, 12, "R"),
        Column(lab.amount, 24, "R"),
    ]
    rows = [
        [
            str(number),
            item.description,
            fmt.plain(item.quantity),
            fmt.number(item.unit_price),
            f"{fmt.plain(rate)}%",
            fmt.number(item.amount),
        ]
        for number, (item, rate) in enumerate(zip(invoice.line_items, style.rates, strict=True), 1)
    ]
    return columns, rows


def _pdf_totals_and_payment(pdf: Pdf, invoice: Invoice, style: Style) -> None:
    """Totals right-aligned under the table (on a new page if they do not fit), then payment."""
    totals = _total_rows(invoice, style)
    if pdf.get_y() + 8 + 6 * len(totals) + 30 > PDF_BOTTOM:
        pdf.add_page()
        pdf.set_y(34)
    y = pdf.get_y() + 4
    for number, (caption, amount, bold) in enumerate(totals):
        pdf.set_xy(100, y + 6 * number)
        pdf.set_font(size=10, style="B" if bold else "")
        pdf.cell(60, 6, caption)
        pdf.cell(30, 6, amount, align="R")
    pdf.set_xy(20, y + 6 * len(totals) + 8)
    pdf.set_font(size=10, style="")
    pdf.multi_cell(170, 5, invoice.payment_terms, align="L")
    pdf.set_x(20)
    pdf.cell(0, 5, f"{style.bank}  |  IBAN {invoice.iban}")


# --- German business letter (DIN 5008-like), Pillow at 200 DPI, to be scanned ---------------------


def letter_invoice(invoice: Invoice, style: Style) -> Canvas:
    """A one-page German-style letter invoice drawn with a serif font on A4 at 200 DPI."""
    lab, seller, buyer = style.labels, invoice.seller, invoice.buyer
    page = Canvas(210, 297, 200, family="DejaVuSerif")
    page.text(190, 18, seller.name, 15, bold=True, align="R")
    for number, line in enumerate([*address_lines(seller.address), *style.contact]):
        page.text(190, 26 + 4.2 * number, line, 8.5, align="R")
    page.text(20, 47, " · ".join([seller.name, *address_lines(seller.address)]), 7)
    page.rule(20, 105, 51, 0.4)
    for number, line in enumerate([buyer.name, *address_lines(buyer.address)]):
        page.text(20, 55 + 5 * number, line, 10.5)
    facts = [
        (lab.number, invoice.invoice_number),
        (lab.issue_date, style.date(invoice.issue_date)),
        (lab.due_date, style.date(invoice.due_date)),
        (lab.po, invoice.purchase_order),
        (lab.buyer_tax_id, buyer.tax_id),
    ]
    for number, (caption, value) in enumerate(facts):
        page.text(122, 55 + 5 * number, caption, 9)
        page.text(190, 55 + 5 * number, value, 9, align="R")
    page.text(20, 98, f"{lab.title} {invoice.invoice_number}", 14, bold=True)

    columns, rows = _letter_table(invoice, style)
    page.row(20, 110, columns, [c.title for c in columns], 9, bold=True)
    page.rule(20, 190, 115.5, 0.8)
    y = 118.0
    if len(invoice.line_items) > 12:
        raise ValueError("the letter layout has room for 12 line items on its one page")
    for cells in rows:
        page.row(20, y, columns, cells, 9.5)
        y += 7
    page.rule(20, 190, y, 0.8)
    totals = _total_rows(invoice, style)
    for number, (caption, amount, bold) in enumerate(totals):
        page.text(92, y + 4 + 6 * number, caption, 10, bold=bold)
        page.text(189, y + 4 + 6 * number, amount, 10, bold=bold, align="R")
    y += 6 * len(totals) + 16
    page.text(20, y, invoice.payment_terms, 10)
    page.text(20, y + 12, lab.closing, 10)
    page.text(20, y + 18, seller.name, 10)

    page.rule(20, 190, 268, 0.4)
    footer = [
        [seller.name, *address_lines(seller.address)],
        [style.bank, f"IBAN {invoice.iban}"],
        [f"{lab.tax_id} {seller.tax_id}", style.footer],
    ]
    for column, lines in enumerate(footer):
        for number, line in enumerate(lines):
            page.text(20 + 60 * column, 271 + 3.6 * number, line, 7)
    return page


def _letter_table(invoice: Invoice, style: Style) -> tuple[list[Column], list[list[str]]]:
    lab, fmt = style.labels, style.fmt
    columns = [
        Column(lab.position, 11),
        Column(lab.description, 76),
        Column(lab.quantity, 16, "R"),
        Column(lab.unit_price, 25, "R"),
        Column(lab.rate, 14, "R"),
        Column(lab.amount, 28, "R"),
    ]
    rows = [
        [
            str(number),
            item.description,
            fmt.plain(item.quantity),
            fmt.money(item.unit_price),
            f"{fmt.plain(rate)} %",
            fmt.money(item.amount),
        ]
        for number, (item, rate) in enumerate(zip(invoice.line_items, style.rates, strict=True), 1)
    ]
    return columns, rows


# --- US letter-size invoice with a colour band, Pillow at 150 DPI, to be photographed -------------

NAVY, PALE = (28, 52, 94), (233, 238, 246)


def us_invoice(invoice: Invoice, style: Style) -> Canvas:
    """A one-page US-style invoice on Letter paper at 150 DPI: band header, bill-to and ship-to."""
    lab, seller, buyer = style.labels, invoice.seller, invoice.buyer
    page = Canvas(215.9, 279.4, 150)
    page.box(0, 0, 215.9, 32, NAVY)
    page.text(16, 10, seller.name, 17, bold=True, fill=(255, 255, 255))
    page.text(200, 9, lab.title, 24, bold=True, align="R", fill=(255, 255, 255))
    for number, line in enumerate([*address_lines(seller.address), *style.contact]):
        page.text(16, 38 + 4.5 * number, line, 9)
    facts = [
        (lab.number, invoice.invoice_number),
        (lab.issue_date, style.date(invoice.issue_date)),
        (lab.due_date, style.date(invoice.due_date)),
        (lab.po, invoice.purchase_order),
        (lab.terms, invoice.payment_terms),
    ]
    for number, (caption, value) in enumerate(facts):
        page.text(150, 38 + 5.2 * number, caption, 9.5, bold=True, align="R")
        page.text(200, 38 + 5.2 * number, value, 9.5, align="R")
    for x, caption, lines in (
        (16, lab.bill_to, [buyer.name, *address_lines(buyer.address)]),
        (110, lab.ship_to, address_lines(style.ship_to)),
    ):
        page.text(x, 72, caption.upper(), 9, bold=True, fill=NAVY)
        for number, line in enumerate(lines):
            page.text(x, 78 + 5 * number, line, 10)

    columns, rows = _us_table(invoice, style)
    page.box(16, 104, 200, 112, NAVY)
    page.row(
        16, 105.5, columns, [c.title.upper() for c in columns], 9, bold=True, fill=(255, 255, 255)
    )
    y = 112.0
    if len(invoice.line_items) > 10:
        raise ValueError("the US layout has room for 10 line items on its one page")
    for number, cells in enumerate(rows):
        if number % 2:
            page.box(16, y, 200, y + 8, PALE)
        page.row(16, y + 1.8, columns, cells, 10)
        y += 8
    page.rule(16, 200, y, 0.8, fill=NAVY)
    totals = _total_rows(invoice, style)
    page.box(118, y + 2 + 7 * len(totals) - 7, 200, y + 2 + 7 * len(totals), PALE)  # balance due
    for number, (caption, amount, bold) in enumerate(totals):
        page.text(122, y + 4 + 7 * number, caption, 10.5, bold=bold)
        page.text(198, y + 4 + 7 * number, amount, 10.5, bold=bold, align="R")
    page.text(108, 250, style.footer, 9.5, align="C")
    page.text(108, 256, lab.closing, 11, bold=True, align="C", fill=NAVY)
    return page


def _us_table(invoice: Invoice, style: Style) -> tuple[list[Column], list[list[str]]]:
    lab, fmt = style.labels, style.fmt
    columns = [
        Column(lab.quantity, 22, "R"),
        Column(lab.description, 96),
        Column(lab.unit_price, 32, "R"),
        Column(lab.amount, 34, "R"),
    ]
    rows = [
        [fmt.plain(i.quantity), i.description, fmt.money(i.unit_price), fmt.money(i.amount)]
        for i in invoice.line_items
    ]
    return columns, rows


def line_item_table(layout: str, invoice: Invoice, style: Style) -> Table:
    """The line-item table of `invoice` drawn by `layout` ("pdf", "letter" or "us"), as the
    `table` schema's ground truth: headers and cells exactly as printed."""
    build = {"pdf": _pdf_table, "letter": _letter_table, "us": _us_table}[layout]
    columns, rows = build(invoice, style)
    titles = [c.title.upper() if layout == "us" else c.title for c in columns]
    return Table(columns=titles, rows=rows)
