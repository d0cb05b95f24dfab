"""Seeds for the review desk's tests and bench: an invoice page in the page cache, its page row,
and an extraction written through the repository's claim/save_outcome with evidence per field
(`field_confidence` in the grounding format: confidence, page, box, match)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw
from sqlalchemy.orm import Session, sessionmaker

from pipeline.ingest import hash_file
from pipeline.prompts import PROMPT_VERSION
from pipeline.render.raster import page_cache_path
from pipeline.settings import Settings
from pipeline.store import repository as repo
from pipeline.types import PageImage
from schemas import get_schema

DPI = 100
SIZE = (850, 1100)
XSS_SCRIPT = "<script>alert(1)</script>"
XSS_IMG = '"><img src=x onerror=alert(1)>'
MODEL_ID = "scripted-empty"

# Where each value is printed on the seeded page, in page pixels at DPI.
LINES: list[tuple[str, str, tuple[int, int]]] = [
    ("invoice_number", "Invoice INV-{n}", (60, 60)),
    ("issue_date", "Date 2026-11-20", (60, 100)),
    ("seller.name", "ACME Tools GmbH", (500, 60)),
    ("line_items[0].description", "Hammer", (60, 300)),
    ("line_items[0].quantity", "2", (400, 300)),
    ("line_items[0].unit_price", "10.00", (500, 300)),
    ("line_items[0].amount", "20.00", (650, 300)),
    ("line_items[1].description", "Nails", (60, 340)),
    ("line_items[1].quantity", "1", (400, 340)),
    ("line_items[1].unit_price", "5.00", (500, 340)),
    ("line_items[1].amount", "5.00", (650, 340)),
    ("subtotal", "Subtotal 25.00", (500, 500)),
    ("tax_total", "Tax 4.75", (500, 540)),
    ("total", "Total 29.75", (500, 580)),
]


def invoice_record(
    n: int, *, total: str = "92.75", seller: str = "ACME Tools GmbH"
) -> dict[str, Any]:
    """A valid invoice whose total is wrong by default (the rule subtotal + tax != total)."""
    record = {
        "invoice_number": f"INV-{n}",
        "issue_date": "2026-11-20",
        "currency": "EUR",
        "seller": {"name": seller, "address": None, "tax_id": None},
        "line_items": [
            {"description": "Hammer", "quantity": "2", "unit_price": "10.00", "amount": "20.00"},
            {"description": "Nails", "quantity": "1", "unit_price": "5.00", "amount": "5.00"},
        ],
        "subtotal": "25.00",
        "tax_total": "4.75",
        "total": total,
    }
    return get_schema("invoice").model_validate(record).model_dump(mode="json")


def evidence(confidence: dict[str, float] | None = None) -> dict[str, Any]:
    """field_confidence for the seeded page: each printed value's box (about 9 px per char)."""
    out: dict[str, Any] = {}
    for path, text, (x, y) in LINES:
        value = (confidence or {}).get(path, 0.97)
        out[path] = {
            "confidence": value,
            "parts": {"tokens": value, "grounding": 1.0},
            "page": 1,
            "box": [x - 4, y - 4, x + 9 * len(text) + 4, y + 22],
            "match": "exact",
            "matched_text": text,
            "reasons": [] if value >= 0.8 else [f"low confidence {value:.2f}"],
        }
    out["due_date"] = {
        "confidence": 0.4,
        "page": None,
        "box": None,
        "match": None,
        "reasons": ["not found on the page"],
    }
    return out


def draw_page(path: Path, n: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", SIZE, "white")
    draw = ImageDraw.Draw(image)
    for _path, text, (x, y) in LINES:
        draw.text((x, y), text.format(n=n), fill="black", font_size=16)
    image.save(path)


@dataclass(frozen=True)
class SeededDoc:
    extraction_id: int
    document_id: int
    sha256: str
    path: Path


def seed_invoice(
    factory: sessionmaker[Session],
    settings: Settings,
    folder: Path,
    n: int,
    *,
    record: dict[str, Any] | None = None,
    status: str = "needs_review",
    reasons: list[str] | None = None,
    field_confidence: dict[str, Any] | None = None,
    model_id: str = MODEL_ID,
    run_id: int | None = None,
    category: str | None = None,
) -> SeededDoc:
    """A document `folder/invoice-n.png` (its page also in the page cache at DPI) and one
    extraction of it in `status`, with a record, reasons and evidence."""
    source = folder / f"invoice-{n}.png"
    draw_page(source, n)
    sha256, size = hash_file(source)
    cached = page_cache_path(settings.page_cache_dir, sha256, 1, DPI)
    draw_page(cached, n)
    record = record if record is not None else invoice_record(n)
    if reasons is None:
        reasons = get_schema("invoice").model_validate(record).review_reasons() if record else []
    with factory.begin() as session:
        document = repo.register_document(session, source, sha256, size, "image/png")
        repo.record_pages(session, document, 1, [PageImage(1, cached, SIZE[0], SIZE[1], DPI)])
        unit = repo.UnitOfWork(document.id, "invoice", "1.1", model_id, PROMPT_VERSION)
        extraction = repo.claim(session, unit, "seeder", lease=timedelta(hours=1), run_id=run_id)
        assert extraction is not None
        fields: dict[str, Any] = {
            "status": status,
            "record": record,
            "review_reasons": reasons,
            "field_confidence": field_confidence if field_confidence is not None else evidence(),
            "raw_outputs": [
                {"text": '{"invoice_number": "' + f"INV-{n}" + '"}', "stop_reason": "end"}
            ],
            "provenance": {"model_id": model_id, "dpi": DPI, "prompt_version": PROMPT_VERSION},
            "pages_total": 1,
            "input_tokens": 1200,
            "output_tokens": 300,
            "seconds": 1.5 + n % 7,
        }
        if category:
            fields.update(error_category=category, error_message=f"{category} on page 1")
        assert repo.save_outcome(session, extraction.id, "seeder", repo.ExtractionOutcome(**fields))
        return SeededDoc(extraction.id, document.id, sha256, source)
