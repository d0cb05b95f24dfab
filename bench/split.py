"""How well bundles are split: boundary precision and recall from the pages' words alone.

    .venv/bin/python bench/split.py [--bundles 40] [--seed 7] [--model tiny-random] [--real]

Bundles are built here, born-digital (text layer): 2-15 documents each, drawn from the sample
documents that have a text layer (two invoices, the two-page invoice, the French invoice, the
price list, the two-page shipment log, the supplier form) and from invoices generated here
(random seller, number, 1-4 pages of line items; half of them print no 'Page k of n' marker, a
quarter no heading), concatenated with pdfium; half of the bundles have a blank separator sheet
between documents. `--real`: bundles of 2-8 real documents instead (the invoices-real corpus:
five ZUGFeRD invoices, ten receipt photos as image pages, so OCR). Each bundle is rendered and
its words read exactly as a run does (`steps.render_all`, `WordsReader`), then `find_split`
decides where documents begin.

A boundary is a page that starts a document (the first page of the file is not counted).
Precision: the share of the boundaries found that are true; recall: the share of the true ones
found. Separator sheets must end in no document. `--model` also asks that model about the pages
the words leave unsure (the figures then include its answers). The last line prints the figures.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pypdfium2 as pdfium

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "sample_docs")]

from _invoice_layouts import Labels, Style, pdf_invoice  # noqa: E402
from _invoices import priced_invoice  # noqa: E402
from _render import NumberFormat, date_dots, date_long_en, iban  # noqa: E402

from pipeline.ingest import ingest_file  # noqa: E402
from pipeline.render.words import WordsReader  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from pipeline.split.detect import find_split  # noqa: E402
from pipeline.steps import render_all  # noqa: E402
from schemas.invoice import Party  # noqa: E402

SAMPLES = (
    "invoice-born-digital.pdf",
    "invoice-two-page.pdf",
    "invoice-fr-discount.pdf",
    "table-price-list.pdf",
    "table-shipments-two-page.pdf",
    "form-supplier-registration.pdf",
)
SELLERS = (
    ("Harbour Freight Partners Ltd", "GB"),
    ("Nordlicht Elektro GmbH", "DE"),
    ("Bluewater Marine Supplies", "IE"),
    ("Castello Ceramiche Srl", "IT"),
    ("Pixel & Press Printing Co.", "US"),
    ("Kestrel Cleaning Services", "GB"),
    ("Oakridge Timber Merchants", "IE"),
)
ITEMS = (
    "Pallet wrap, 500 mm",
    "Cable ties, 300 mm, pack of 100",
    "Safety gloves, size 9",
    "Printer toner, black",
    "Copy paper A4, 80 g, box",
    "Label rolls, 100 x 150 mm",
    "Packing tape, brown, 66 m",
    "Site visit, per hour",
)
LINES_PER_PAGE = 18  # about what one page of the sample layout holds


@dataclass(frozen=True)
class Bundle:
    pdf: bytes
    starts: frozenset[int]  # true first pages, page 1 excluded
    separators: frozenset[int]
    documents: int


def generated_invoice(rng: random.Random, pages: int, marker: bool, heading: bool) -> bytes:
    seller, country = rng.choice(SELLERS)
    count = min(
        60, rng.randint(max(1, (pages - 1) * LINES_PER_PAGE + 3), pages * LINES_PER_PAGE - 4)
    )
    lines = [
        (rng.choice(ITEMS), str(rng.randint(1, 40)), f"{rng.randint(100, 9000) / 100:.2f}", "20")
        for _ in range(count)
    ]
    issued = date(2026, 1, 1) + timedelta(days=rng.randrange(300))
    invoice, rates = priced_invoice(
        lines,
        invoice_number=f"{seller[:2].upper()}-{issued.year}-{rng.randrange(10, 99999):05d}",
        issue_date=issued,
        due_date=issued + timedelta(days=30),
        purchase_order=f"PO-{rng.randrange(1000, 99999)}",
        payment_terms="30 days net.",
        currency="EUR",
        seller=Party(
            name=seller,
            tax_id=f"{country}{rng.randrange(10**8, 10**9)}",
            address="1 Quay Street, Galway",
        ),
        buyer=Party(name="Fennwick Logistics Ltd", tax_id="IE9832117K", address="Dublin 15"),
        iban=iban("IE", f"CNBK{rng.randrange(10**13, 10**14)}"),
    )
    labels = Labels(
        page="Page {page} of {pages}" if marker else "", title="INVOICE" if heading else ""
    )
    style = Style(
        NumberFormat(",", ".", "€{}"),
        rng.choice((date_long_en, date_dots)),
        labels=labels,
        rates=rates,
    )
    return pdf_invoice(invoice, style)


def real_documents(shared: Path) -> list[bytes]:
    """The invoices-real corpus as PDFs: its born-digital ZUGFeRD invoices as they are, its
    receipt photos as image pages (read by OCR)."""
    from PIL import Image

    folder = shared / "corpus" / "invoices-real"
    documents = [p.read_bytes() for p in sorted(folder.glob("*.pdf"))]
    for photo in sorted(folder.glob("*.jpg")):
        buffer = io.BytesIO()
        with Image.open(photo) as image:
            image.convert("RGB").save(buffer, "PDF", resolution=200)
        documents.append(buffer.getvalue())
    return documents


def build_bundle(
    rng: random.Random, samples: list[bytes], separators: bool, real: bool = False
) -> Bundle:
    out = pdfium.PdfDocument.new()
    starts: set[int] = set()
    blank: set[int] = set()
    count = rng.randint(2, 8 if real else 15)
    for index in range(count):
        if real or rng.random() < 0.4:
            source = rng.choice(samples)
        else:
            pages = rng.choice((1, 1, 2, 2, 3, 4))
            source = generated_invoice(rng, pages, rng.random() < 0.5, rng.random() < 0.75)
        if index and separators:
            out.new_page(595, 842)
            blank.add(len(out))
        if index:
            starts.add(len(out) + 1)
        out.import_pages(pdfium.PdfDocument(source))
    buffer = io.BytesIO()
    out.save(buffer)
    return Bundle(buffer.getvalue(), frozenset(starts), frozenset(blank), count)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundles", type=int, default=40)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--model", default=None, help="also ask this model about unsure pages")
    parser.add_argument(
        "--real",
        action="store_true",
        help="bundles of 2-8 documents from ../shared/corpus/invoices-real (or DOCEXTRACT_SHARED"
        "/corpus/...): real ZUGFeRD invoices and receipt photos (OCR) instead of the samples",
    )
    args = parser.parse_args()
    rng = random.Random(args.seed)
    if args.real:
        shared = Path(os.environ.get("DOCEXTRACT_SHARED") or REPO.parent / "shared")
        samples = real_documents(shared)
    else:
        samples = [(REPO / "sample_docs" / name).read_bytes() for name in SAMPLES]
    found_true = found = true = pages = 0
    separator_misses = unsure = 0
    seconds = 0.0
    with tempfile.TemporaryDirectory() as home:
        model_settings = {"model": {"name": args.model}} if args.model else {}
        settings = Settings(cache_dir=Path(home) / "cache", **model_settings)
        ask = None
        if args.model:
            from pipeline.backends import get_model
            from pipeline.split.ask import ask_model

            model = get_model(settings)
            ask = lambda b, page: ask_model(b, page, model, settings)  # noqa: E731
        for number in range(args.bundles):
            bundle = build_bundle(rng, samples, separators=number % 2 == 1, real=args.real)
            path = Path(home) / f"bundle-{number:03d}.pdf"
            path.write_bytes(bundle.pdf)
            started = time.perf_counter()
            file = ingest_file(path, settings.raster)
            raster = render_all(file, settings)
            words = WordsReader(file, raster.pages, settings).result(raster.pages, 600)
            split = find_split(raster, words, settings.split, ask)
            seconds += time.perf_counter() - started
            starts = {first for first, _ in split.parts[1:]}
            found_true += len(starts & bundle.starts)
            found += len(starts)
            true += len(bundle.starts)
            pages += raster.page_count
            separator_misses += len(bundle.separators - set(split.separators))
            unsure += len(split.unsure(settings.split.min_confidence))
            wrong = sorted(starts ^ bundle.starts)
            if wrong:
                why = {b.page: f"{b.starts}/{b.confidence:.2f} {b.why}" for b in split.boundaries}
                print(
                    f"{path.name}: {bundle.documents} documents, wrong at pages {wrong}: "
                    + "; ".join(f"p{p}: {why.get(p, 'blank')}" for p in wrong)
                )
    precision = found_true / found if found else 1.0
    recall = found_true / true if true else 1.0
    print(
        f"bundles={args.bundles} pages={pages} boundaries={true} found={found} "
        f"precision={precision:.1%} recall={recall:.1%} separators_missed={separator_misses} "
        f"unsure={unsure} ms_per_page={1000 * seconds / max(pages, 1):.0f}"
        + (f" model={args.model}" if args.model else " model=none (words only)")
        + (" corpus=invoices-real" if args.real else " corpus=samples+generated")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
