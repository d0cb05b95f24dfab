"""More invoices: a French one with a discount in parentheses, a British one scanned crooked."""

from __future__ import annotations

from datetime import date

from _invoice_layouts import Labels, Style, line_item_table, pdf_invoice, us_invoice
from _invoices import priced_invoice
from _render import NumberFormat, Sample, date_long_en, iban, scanned_pdf

from schemas.invoice import Party

FRENCH = Labels(
    title="FACTURE",
    number="N° de facture",
    issue_date="Date",
    due_date="Échéance",
    po="Bon de commande",
    currency="Devise",
    bill_to="Facturé à",
    position="N°",
    description="Désignation",
    quantity="Qté",
    unit_price="Prix unit.",
    rate="TVA",
    amount="Montant HT",
    subtotal="Total HT",
    tax="TVA {rate} % sur {base}",
    total="Total TTC",
    amount_due="Net à payer",
    tax_id="N° TVA",
    page="Page {page} sur {pages}",
    continued="Suite page suivante",
)


def invoice_french_discount() -> Sample:
    """French lighting workshop, EUR as `4 117,80 €`, a discount line printed `(150,00)`."""
    invoice, rates = priced_invoice(
        [
            ("Luminaire suspendu LED, laiton brossé", "8", "189.00", "20"),
            ("Applique murale, verre soufflé", "12", "74.50", "20"),
            ("Ruban LED 24 V, 5 m, blanc chaud", "20", "18.90", "20"),
            ("Installation et raccordement (heures)", "14.5", "55.00", "20"),
            ("Remise fidélité", "1", "-150.00", "20"),
        ],
        invoice_number="F-2025-0412",
        issue_date=date(2025, 4, 22),
        due_date=date(2025, 5, 31),
        purchase_order="BC-88-1907",
        currency="EUR",
        seller=Party(
            name="Atelier Lumière SARL",
            tax_id="FR40303265045",
            address="18 rue de la Charité, 69002 Lyon, France",
        ),
        buyer=Party(
            name="Hôtel des Célestins",
            tax_id="FR83404833048",
            address="4 rue des Archers, 69002 Lyon, France",
        ),
        payment_terms="Paiement à réception de facture, au plus tard le 31 mai 2025, "
        "par virement bancaire.",
        iban=iban("FR", "30006000011234567890189"),
    )
    style = Style(
        NumberFormat(" ", ",", "{} €", parentheses=True),
        lambda day: day.strftime("%d/%m/%Y"),
        FRENCH,
        rates=rates,
        contact=("04 78 55 01 92", "compta@atelier-lumiere.example"),
        bank="Banque Rhône-Alpes, BIC BRALFRPPXXX",
        footer="SARL au capital de 20 000 €, RCS Lyon 812 554 019",
    )
    table = line_item_table("pdf", invoice, style)
    return Sample("invoice-fr-discount.pdf", (invoice, table), lambda: pdf_invoice(invoice, style))


def invoice_uk_scanned() -> Sample:
    """British office furniture dealer, GBP (£2,581.58), VAT 20 %, US-style page scanned
    crooked (-1.2°) at 150 DPI; no bank details printed, so no IBAN in the truth."""
    invoice, rates = priced_invoice(
        [
            ("Office chair, mesh back, black", "6", "149.00", "20"),
            ("Standing desk frame, electric", "2", "389.99", "20"),
            ("Desk top, oak veneer 160 x 80 cm", "2", "145.50", "20"),
            ("Monitor arm, dual, gas spring", "4", "62.25", "20"),
            ("Delivery and assembly", "1", "95.00", "20"),
        ],
        invoice_number="TOF-51207",
        issue_date=date(2025, 11, 3),
        due_date=date(2025, 11, 17),
        purchase_order="KA-0931",
        currency="GBP",
        seller=Party(
            name="Thameside Office Furniture Ltd",
            tax_id="GB284511962",
            address="Unit 7 Riverside Estate, Reading RG1 8DL",
        ),
        buyer=Party(name="Kestrel Architects LLP", address="22 Broad Street, Oxford OX1 3AZ"),
        payment_terms="14 days",
    )
    labels = Labels(
        number="Invoice no.",
        issue_date="Date",
        due_date="Due",
        po="Your order",
        tax="VAT ({rate}%)",
        amount_due="Amount due",
        ship_to="Deliver to",
    )
    style = Style(
        NumberFormat(",", ".", "£{}"),
        date_long_en,
        labels,
        rates=rates,
        contact=("0118 496 0321", "accounts@thameside-furniture.example", "VAT GB284511962"),
        footer="Registered in England and Wales No. 09712845",
        ship_to="Kestrel Architects, 3rd floor, 22 Broad Street, Oxford OX1 3AZ",
    )

    def render() -> bytes:
        page = us_invoice(invoice, style).image
        title = f"Scan {invoice.invoice_number}"
        return scanned_pdf(page, seed=5120, angle=-1.2, title=title, dpi=150)

    return Sample(
        "invoice-uk-scanned.pdf", (invoice, line_item_table("us", invoice, style)), render
    )
