"""Tables of the sample set: a dense one-page price list and a shipment log over two pages.

Both are born-digital (fpdf2, core fonts, text layer). The truth holds every cell as printed;
the two-page table repeats its column header on page 2 and is still one table.
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from decimal import Decimal

from _render import Column, NumberFormat, Pdf, Sample

from schemas.table import Table

# --- a dense price list ---------------------------------------------------------------------------

PRICE_COLUMNS = (
    Column("Art. no.", 22),
    Column("Description", 62),
    Column("Size", 20),
    Column("Pack", 14, "R"),
    Column("Price/pack (EUR)", 28, "R"),
    Column("Availability", 24),
)
PARTS = (
    ("Hex bolt DIN 933, A2", ("M6 x 20", "M8 x 30", "M8 x 40", "M10 x 50", "M12 x 60")),
    ("Hex nut DIN 934, A2", ("M6", "M8", "M10", "M12")),
    ("Washer DIN 125, A2", ("6.4", "8.4", "10.5", "13")),
    ("Socket cap screw ISO 4762, A4", ("M5 x 16", "M6 x 25", "M8 x 35", "M10 x 40")),
    ("Countersunk screw ISO 10642, A2", ("M4 x 12", "M5 x 20", "M6 x 30")),
    ("Threaded rod DIN 976, A2, 1 m", ("M8", "M10", "M12")),
    ("Wood screw, Torx, A2", ("4 x 30", "4 x 40", "5 x 50", "5 x 70", "6 x 80")),
    ("Nyloc nut DIN 985, A4", ("M6", "M8", "M10")),
    ("Spring washer DIN 127, A2", ("M8", "M10")),
    ("Eye bolt DIN 580, A4", ("M8", "M10", "M12")),
    ("Wing nut DIN 315, A2", ("M6", "M8")),
)
PRICE_NOTES = [
    "Prices in EUR per pack, excluding VAT, valid from 1 January 2025.",
    "* Discontinued: sold while stock lasts.",
]


def price_list() -> Sample:
    """40 rows of 6 columns in 8 pt on one A4 page."""
    rng, fmt = random.Random(933), NumberFormat(",", ".", "{}")
    rows: list[list[str | None]] = []
    for family, (name, sizes) in enumerate(PARTS, start=1):
        for variant, size in enumerate(sizes, start=1):
            pack = rng.choice((10, 25, 50, 100, 200))
            price = Decimal(rng.randrange(180, 9000)) / 100
            availability = rng.choice(
                ("in stock", "in stock", "in stock", "2 weeks", "discontinued*")
            )
            rows.append(
                [
                    f"FS-{family:02d}{variant:02d}{pack:03d}",
                    name,
                    size,
                    str(pack),
                    fmt.number(price),
                    availability,
                ]
            )
    table = Table(
        title="Price list 2025 - Stainless steel fasteners",
        columns=[c.title for c in PRICE_COLUMNS],
        rows=rows,
        notes=PRICE_NOTES,
    )

    def render() -> bytes:
        pdf = Pdf(
            table.title or "",
            "Baltic Fasteners GmbH",
            "Baltic Fasteners GmbH, Kiel",
            "Page {page} of {pages}",
        )
        pdf.add_page()
        pdf.set_font("helvetica", "B", 14)
        pdf.cell(0, 8, table.title or "")
        _pdf_table(pdf, PRICE_COLUMNS, table.rows, 30, 8, 5.2)
        pdf.set_font("helvetica", "", 8)
        for note in table.notes:
            pdf.set_x(20)
            pdf.cell(0, 4.5, note)
            pdf.ln(4.5)
        return pdf.to_bytes()

    return Sample("table-price-list.pdf", (table,), render)


def _pdf_table(
    pdf: Pdf,
    columns: tuple[Column, ...],
    rows: list[list[str | None]],
    y: float,
    pt: float,
    height: float,
) -> None:
    """Header row at `y`, then the rows; zebra stripes so dense rows stay readable."""
    pdf.set_xy(20, y)
    pdf.set_fill_color(220, 226, 234)
    pdf.rect(20, y, sum(c.width for c in columns), height + 1, style="F")
    pdf.set_font("helvetica", "B", pt)
    pdf.row(columns, [c.title for c in columns], height + 1)
    pdf.set_font("helvetica", "", pt)
    for number, row in enumerate(rows):
        if number % 2:
            pdf.set_fill_color(244, 246, 249)
            pdf.rect(20, pdf.get_y(), sum(c.width for c in columns), height, style="F")
        pdf.row(columns, [cell or "" for cell in row], height)
    pdf.ln(3)


# --- a shipment log over two pages ----------------------------------------------------------------

SHIPMENT_COLUMNS = (
    Column("Date", 22),
    Column("Shipment", 26),
    Column("Destination", 44),
    Column("Carrier", 30),
    Column("Pallets", 16, "R"),
    Column("Weight (kg)", 24, "R"),
)
DESTINATIONS = (
    "Rotterdam, NL",
    "Antwerp, BE",
    "Hamburg, DE",
    "Gdansk, PL",
    "Le Havre, FR",
    "Valencia, ES",
    "Genoa, IT",
    "Gothenburg, SE",
    "Aarhus, DK",
    "Felixstowe, GB",
    "Bremen, DE",
    "Ghent, BE",
)
CARRIERS = ("Nordfracht", "TransAlp Cargo", "Maas Logistics", "Vistula Freight")
ROWS_ON_FIRST_PAGE = 40


def shipment_log() -> Sample:
    """56 shipments: 40 on page 1, 16 on page 2 under the repeated column header."""
    rng, fmt = random.Random(2025), NumberFormat(",", ".", "{}")
    day, rows = date(2025, 9, 1), []
    for number in range(56):
        day += timedelta(days=rng.choice((0, 0, 1)))
        pallets = rng.randrange(1, 33)
        weight = Decimal(pallets * rng.randrange(180, 720))
        rows.append(
            [
                day.strftime("%d.%m.%Y"),
                f"SHP-25-{9000 + number * 7}",
                rng.choice(DESTINATIONS),
                rng.choice(CARRIERS),
                str(pallets),
                fmt.number(weight, 0),
            ]
        )
    table = Table(
        title="Outbound shipments, September 2025",
        columns=[c.title for c in SHIPMENT_COLUMNS],
        rows=rows,
        notes=["Weights are gross weights including pallets."],
    )

    def render() -> bytes:
        pdf = Pdf(
            table.title or "",
            "Kiel Distribution Centre",
            "Kiel Distribution Centre",
            "Page {page} of {pages}",
        )
        pdf.running_header = f"{table.title} (continued)"
        pdf.add_page()
        pdf.set_font("helvetica", "B", 14)
        pdf.cell(0, 8, table.title or "")
        _pdf_table(pdf, SHIPMENT_COLUMNS, table.rows[:ROWS_ON_FIRST_PAGE], 30, 9, 5.6)
        pdf.add_page()
        _pdf_table(pdf, SHIPMENT_COLUMNS, table.rows[ROWS_ON_FIRST_PAGE:], 34, 9, 5.6)
        pdf.set_font("helvetica", "I", 8)
        pdf.set_x(20)
        pdf.cell(0, 4.5, table.notes[0])
        return pdf.to_bytes()

    return Sample("table-shipments-two-page.pdf", (table,), render)
