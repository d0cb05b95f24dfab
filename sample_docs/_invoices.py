"""The invoices of the sample set: each truth is built first (arithmetic computed, never typed),
then drawn by a layout; the line-item table as printed is the `table` schema's truth."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from _invoice_layouts import (
    Labels,
    Style,
    letter_invoice,
    line_item_table,
    pdf_invoice,
    us_invoice,
)
from _render import (
    NumberFormat,
    Sample,
    date_dots,
    date_long_en,
    date_us,
    iban,
    photographed_png,
    scanned_pdf,
)

from schemas.invoice import Invoice, LineItem, Party, TaxLine

# --- ground truth ---------------------------------------------------------------------------------

Line = tuple[str, str, str, str]  # description, quantity, unit price, VAT rate in percent


def _cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), ROUND_HALF_UP)


def priced_invoice(
    lines: Sequence[Line], paid: str = "0", **fields: Any
) -> tuple[Invoice, tuple[Decimal, ...]]:
    """An Invoice whose amounts, tax per rate and totals are computed from `lines`.

    Returns the invoice and the VAT rate of each line (printed, but not part of the schema).
    """
    items = [
        LineItem(
            description=d,
            quantity=Decimal(q),
            unit_price=Decimal(p),
            amount=_cents(Decimal(q) * Decimal(p)),
        )
        for d, q, p, _ in lines
    ]
    rates = tuple(Decimal(rate) for *_, rate in lines)
    subtotal = sum((item.amount for item in items), Decimal(0))
    tax_lines = []
    for rate in sorted(set(rates), reverse=True):
        base = sum((i.amount for i, r in zip(items, rates, strict=True) if r == rate), Decimal(0))
        tax_lines.append(TaxLine(rate=rate, amount=_cents(base * rate / 100)))
    tax_total = sum((t.amount for t in tax_lines), Decimal(0))
    invoice = Invoice(
        line_items=items,
        subtotal=subtotal,
        tax_lines=tax_lines,
        tax_total=tax_total,
        total=subtotal + tax_total,
        amount_due=subtotal + tax_total - Decimal(paid),
        **fields,
    )
    return invoice, rates


# --- the documents --------------------------------------------------------------------------------


def invoice_born_digital() -> Sample:
    """Irish cloud provider, EUR in English format (€3,783.85), one VAT rate, text layer."""
    invoice, rates = priced_invoice(
        [
            ("Cloud hosting, production cluster (March)", "1", "1450.00", "23"),
            ("Managed PostgreSQL, 500 GB storage", "1", "389.00", "23"),
            ("Support hours, incident response", "7.5", "95.00", "23"),
            ("SSL certificate renewal, wildcard", "2", "149.90", "23"),
            ("Offsite backup, per TB-month", "12", "18.75", "23"),
        ],
        invoice_number="INV-2025-0318",
        issue_date=date(2025, 3, 14),
        due_date=date(2025, 4, 13),
        purchase_order="PO-77120",
        currency="EUR",
        seller=Party(
            name="Corrib Cloud Services Ltd",
            tax_id="IE3391842LH",
            address="4 Parkmore Business Park West, Galway H91 T2C8, Ireland",
        ),
        buyer=Party(
            name="Fennwick Logistics Ltd",
            tax_id="IE9832117K",
            address="Block C, Ballycoolin Business Park, Dublin 15 D15 KX26, Ireland",
        ),
        payment_terms="Payment within 30 days of the invoice date by bank transfer, "
        "quoting the invoice number.",
        iban=iban("IE", "CNBK93115210482716"),
    )
    style = Style(
        NumberFormat(",", ".", "€{}"),
        date_long_en,
        rates=rates,
        contact=("+353 91 555 0142", "accounts@corribcloud.example"),
        bank="Bank of Connacht, BIC CNBKIE2G",
        footer="Registered in Ireland No. 648213",
    )
    table = line_item_table("pdf", invoice, style)
    return Sample("invoice-born-digital.pdf", (invoice, table), lambda: pdf_invoice(invoice, style))


GERMAN = Labels(
    title="Rechnung",
    number="Rechnungsnr.",
    issue_date="Rechnungsdatum",
    due_date="Fällig am",
    po="Ihre Bestellung",
    position="Pos.",
    description="Bezeichnung",
    quantity="Menge",
    unit_price="Einzelpreis",
    rate="USt.",
    amount="Gesamt",
    subtotal="Nettobetrag",
    tax="zzgl. {rate} % USt. auf {base}",
    total="Rechnungsbetrag",
    amount_due="Zu zahlen",
    tax_id="USt-IdNr.",
    buyer_tax_id="Ihre USt-IdNr.",
    closing="Mit freundlichen Grüßen",
)


def invoice_scanned() -> Sample:
    """German office supplier, EUR in German format (1.084,48 €), 19 % and 7 %, scanned image."""
    invoice, rates = priced_invoice(
        [
            ("Kopierpapier A4, 80 g/m², 5 x 500 Blatt", "12", "21.90", "19"),
            ("Ordner breit, 8 cm, blau", "40", "2.35", "19"),
            ("Toner HL-L5100, schwarz", "3", "64.50", "19"),
            ("Haftnotizen 76 x 76 mm, 12er-Pack", "10", "6.79", "19"),
            ("Fachbuch Vertragsrecht, 4. Auflage", "2", "89.00", "7"),
            ("Zeitschrift Steuerpraxis, Jahresabo", "1", "148.00", "7"),
        ],
        invoice_number="RE-2025-10457",
        issue_date=date(2025, 5, 6),
        due_date=date(2025, 5, 20),
        purchase_order="4500-2281",
        currency="EUR",
        seller=Party(
            name="Papierwerk Lindner GmbH",
            tax_id="DE284719330",
            address="Industriestraße 14, 90431 Nürnberg",
        ),
        buyer=Party(
            name="Kanzlei Berger & Hoff",
            tax_id="DE317604128",
            address="Theresienstraße 8, 80333 München",
        ),
        payment_terms="Zahlbar innerhalb von 14 Tagen ohne Abzug.",
        iban=iban("DE", "760501010012345678"),
    )
    style = Style(
        NumberFormat(".", ",", "{} €"),
        date_dots,
        GERMAN,
        rates=rates,
        contact=("Tel. 0911 555 2040", "buchhaltung@papierwerk-lindner.example"),
        bank="Frankenbank Nürnberg, BIC FRNBDEM1XXX",
        footer="Amtsgericht Nürnberg HRB 41127",
    )

    def render() -> bytes:
        page = letter_invoice(invoice, style).image
        return scanned_pdf(page, seed=1057, angle=0.7, title=f"Scan {invoice.invoice_number}")

    return Sample(
        "invoice-scanned.pdf", (invoice, line_item_table("letter", invoice, style)), render
    )


def invoice_photo() -> Sample:
    """Texas print shop, USD ($1,916.30), sales tax, a deposit paid; photographed PNG."""
    invoice, rates = priced_invoice(
        [
            ("Vinyl banner 3 x 8 ft, full color", "4", "86.00", "8.25"),
            ("Business cards, 16 pt matte, box of 500", "6", "42.50", "8.25"),
            ("Trifold brochures, 100 lb gloss", "1500", "0.38", "8.25"),
            ("Yard signs 18 x 24 in with H-stakes", "25", "14.95", "8.25"),
            ("Graphic design, hourly", "3.5", "65.00", "8.25"),
        ],
        paid="500.00",
        invoice_number="10482",
        issue_date=date(2025, 6, 2),
        due_date=date(2025, 7, 2),
        purchase_order="HCV-2291",
        currency="USD",
        seller=Party(
            name="Bluebonnet Print & Sign Co.", address="2210 E Cesar Chavez St, Austin, TX 78702"
        ),
        buyer=Party(
            name="Hill Country Veterinary Clinic", address="1804 Ranch Rd 620 S, Lakeway, TX 78734"
        ),
        payment_terms="Net 30",
    )
    labels = Labels(
        number="Invoice #",
        issue_date="Date",
        due_date="Due date",
        po="P.O. #",
        unit_price="Unit price",
        tax="Sales tax ({rate}%)",
        paid="Deposit received",
        amount_due="Balance due",
    )
    style = Style(
        NumberFormat(",", ".", "${}"),
        date_us,
        labels,
        rates=rates,
        contact=("(512) 555-0187", "orders@bluebonnetprint.example"),
        footer="Make all checks payable to Bluebonnet Print & Sign Co.",
        ship_to="Hill Country Vet - Bee Cave, 12700 Hill Country Blvd, Bee Cave, TX 78738",
    )

    def render() -> bytes:
        return photographed_png(us_invoice(invoice, style).image, seed=482)

    return Sample("invoice-photo.png", (invoice, line_item_table("us", invoice, style)), render)


LAB_SUPPLIES = """Pipette tips 10 µl, racked|Pipette tips 200 µl, racked|Pipette tips 1000 µl, bulk
Microcentrifuge tubes 1.5 ml|PCR tubes 0.2 ml, 8-strips|Cryovials 2 ml, external thread
Serological pipettes 10 ml|Serological pipettes 25 ml|Cell culture flasks T75, vented
Cell culture plates, 6-well|Cell culture plates, 96-well|Petri dishes 90 mm, sterile
Nitrile gloves M, box of 100|Nitrile gloves L, box of 100|Lab coat, cotton, size 52
Conical tubes 15 ml, rack|Conical tubes 50 ml, rack|Syringe filters 0.22 µm PES
Parafilm M, 10 cm x 38 m|Weighing boats, 100 ml|Nalgene bottles 500 ml, PP
Cell scrapers, 25 cm|Disposable cuvettes, PS|Glass slides, frosted end
Cover glasses 24 x 50 mm|Autoclave tape 19 mm|Biohazard bags 60 l
Ethanol 70 %, 5 l canister|Trypsin-EDTA 0.25 %, 100 ml|DPBS without Ca/Mg, 500 ml"""


def invoice_two_page() -> Sample:
    """Swiss lab supplier, CHF in Swiss format (CHF 25'392.15), 30 lines over two A4 pages."""
    rng = random.Random(30)
    lines = [
        (
            name,
            str(rng.choice((1, 2, 3, 4, 5, 6, 10, 12, 20, 25))),
            str(Decimal(rng.randrange(60, 3200)) * Decimal("0.05")),
            "8.1",
        )
        for name in LAB_SUPPLIES.replace("\n", "|").split("|")
    ]
    invoice, rates = priced_invoice(
        lines,
        invoice_number="AL-25-03391",
        issue_date=date(2025, 9, 18),
        due_date=date(2025, 10, 18),
        purchase_order="ZF-PO-5531",
        currency="CHF",
        seller=Party(
            name="Alpenblick Laborbedarf AG",
            tax_id="CHE-312.458.907 MWST",
            address="Industriestrasse 27, 8604 Volketswil, Switzerland",
        ),
        buyer=Party(
            name="Zellforma Biotech SA",
            tax_id="CHE-451.120.386 MWST",
            address="Route de la Corniche 4, 1066 Epalinges, Switzerland",
        ),
        payment_terms="30 days net, without deduction.",
        iban=iban("CH", "00762011623852957"),
    )
    style = Style(
        NumberFormat("'", ".", "CHF {}"),
        date_dots,
        rates=rates,
        contact=("+41 44 555 18 90", "debitoren@alpenblick-labor.example"),
        bank="Zürcher Gewerbebank, BIC ZGBKCHZZ80A",
        footer="Handelsregister CHE-312.458.907",
    )
    table = line_item_table("pdf", invoice, style)
    return Sample("invoice-two-page.pdf", (invoice, table), lambda: pdf_invoice(invoice, style))
