"""The pages stage: blank pages set aside (real scanner noise, not only white images), pages
turned upright and straightened before tiling, the decisions kept with the document."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from conftest import REPO, SHARED
from PIL import Image, ImageDraw, ImageFont, ImageSequence
from sqlalchemy import select

from pipeline.backends.scripted import ScriptedModel, empty_record_json
from pipeline.pages import prepare_page
from pipeline.pages.blank import is_blank
from pipeline.pages.ink import page_ink
from pipeline.pages.orientation import ink_orientation
from pipeline.pages.prepare import facts_path
from pipeline.runner import process, register
from pipeline.settings import PagesSettings, Settings, SplitSettings
from pipeline.store.db import open_database, session_factory
from pipeline.store.models import Extraction, Page
from pipeline.types import PageImage, VisionRequest

sys.path.insert(0, str(REPO / "sample_docs"))
from _scans import scan, white_sheet

# ../shared beside the repository; DOCEXTRACT_SHARED points elsewhere (a git worktree)
CORPUS = Path(os.environ.get("DOCEXTRACT_SHARED", SHARED)) / "corpus" / "robustness"
FAX = CORPUS / "pillow-total-pages-zero.tif"
needs_corpus = pytest.mark.skipif(not FAX.exists(), reason=f"no robustness corpus at {CORPUS}")
PAGES = PagesSettings(orientation="auto")  # the default, named: these tests are about it


def rendered(name: str, dpi: int = 200) -> Image.Image:
    """Page 1 of a sample PDF (trusted: rendered here with pdfium)."""
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(str(REPO / "sample_docs" / name))
    try:
        return pdf[0].render(scale=dpi / 72, grayscale=True).to_pil().convert("L")
    finally:
        pdf.close()


@pytest.fixture(scope="module")
def invoice() -> Image.Image:
    return rendered("invoice-born-digital.pdf")


def blank(image: Image.Image, dpi: int = 200) -> bool:
    return is_blank(page_ink(image, dpi), PAGES.blank_max_content_mm2)[0]


def as_page(tmp_path: Path, image: Image.Image, name: str = "p0001-200dpi.png") -> PageImage:
    path = tmp_path / name
    image.save(path)
    return PageImage(1, path, image.width, image.height, 200)


# -- blank pages -------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_a_scanned_empty_sheet_is_blank(seed: int, invoice: Image.Image) -> None:
    # grey paper, sensor noise, dust, JPEG; with the lid's dark edge, punch holes and the other
    # side's print showing through on some
    sheet = scan(
        white_sheet(),
        seed=seed,
        tilt=0.8,
        edge=seed % 2 == 0,
        holes=seed > 1,
        bleed=invoice if seed in (1, 3) else None,
    )
    assert blank(sheet)


@needs_corpus
def test_real_fax_noise_is_blank_and_its_print_is_not() -> None:
    # a real fax page (corpus) with a header and footer line: the page is not blank, the empty
    # middle of it (real transmission noise) is
    with Image.open(FAX) as tiff:
        page = [frame.convert("L") for frame in ImageSequence.Iterator(tiff)][2]
    assert not blank(page)
    middle = page.crop((0, page.height // 8, page.width, page.height * 7 // 8))
    assert blank(middle)


def test_the_empty_part_of_a_sample_scan_is_blank() -> None:
    page = rendered("invoice-uk-scanned.pdf")
    assert not blank(page)
    assert blank(page.crop((0, page.height * 72 // 100, page.width, page.height * 87 // 100)))


@pytest.mark.parametrize(
    "name",
    [
        "invoice-born-digital.pdf",
        "invoice-scanned.pdf",
        "form-expense-claim.pdf",
        "table-price-list.pdf",
        "invoice-uk-scanned.pdf",
    ],
)
def test_pages_with_print_are_never_blank(name: str) -> None:
    page = rendered(name)
    assert not blank(page)
    assert not blank(scan(page, seed=7, tilt=-1.0, edge=True, holes=True))


def test_a_word_or_a_page_number_is_content_a_stray_mark_is_not() -> None:
    font = ImageFont.load_default(size=40)  # about 10 pt at 200 DPI
    word, number, mark = white_sheet(), white_sheet(), white_sheet()
    ImageDraw.Draw(word).text((300, 300), "Paid 12.03.", fill=0, font=font)
    ImageDraw.Draw(number).text((800, 2200), "2", fill=0, font=font)
    ImageDraw.Draw(mark).text((800, 2200), "-", fill=0, font=font)  # a pen stroke, a tick
    assert not blank(scan(word, seed=1))
    assert not blank(scan(number, seed=1))  # never dropped on a guess
    assert blank(scan(mark, seed=1))


# -- orientation and skew ----------------------------------------------------------------------


@pytest.mark.parametrize("turn", [0, 90, 180, 270])
def test_a_page_fed_sideways_or_upside_down_is_turned_upright(
    turn: int, invoice: Image.Image, tmp_path: Path
) -> None:
    page = as_page(tmp_path, scan(invoice, seed=turn, tilt=1.5, turn=turn))
    done = prepare_page(page, PAGES)
    assert done.facts is not None and not done.facts.blank
    assert done.facts.turned == (360 - turn) % 360 and done.facts.by in ("ink", "osd")
    assert done.rotation == (360 - turn) % 360
    assert done.facts.skew == pytest.approx(-1.5, abs=0.3)  # straightened too
    with Image.open(done.path) as upright:
        assert (upright.width, upright.height) == (done.width, done.height) == invoice.size
        assert ink_orientation(page_ink(upright, 200)).turn == 0


def test_facts_are_kept_beside_the_page_and_not_measured_twice(
    invoice: Image.Image, tmp_path: Path
) -> None:
    page = as_page(tmp_path, invoice.rotate(90, expand=True))
    first = prepare_page(page, PAGES)
    assert first.facts is not None and first.facts.turned == 90
    assert facts_path(page).exists()
    again = prepare_page(page, PAGES)  # the PNG is upright now: it must not be turned again
    assert again.facts == first.facts and (again.width, again.height) == invoice.size


def test_orientation_off_leaves_the_page_as_rendered(invoice: Image.Image, tmp_path: Path) -> None:
    page = as_page(tmp_path, invoice.rotate(180))
    done = prepare_page(page, PagesSettings(orientation="off", deskew=False))
    assert done.facts is not None and (done.facts.turned, done.facts.by) == (0, "off")


# -- in the spine ------------------------------------------------------------------------------


def pdf_of(tmp_path: Path, images: list[Image.Image], name: str) -> Path:
    path = tmp_path / name
    first, *rest = [im.convert("RGB") for im in images]
    first.save(path, "PDF", resolution=200, save_all=True, append_images=rest)
    return path


def run(path: Path, settings: Settings) -> tuple[dict[str, object], Extraction, list[Page]]:
    model = ScriptedModel(lambda r, n: empty_record_json(r.json_schema))
    # one document whatever its pages say (the same invoice twice would be two: test_bundles)
    settings = settings.model_copy(update={"split": SplitSettings(mode="never")})
    factory = session_factory(open_database(settings.db_url.get_secret_value()))
    outcome = process(factory, register(factory, path, settings), settings, model=model)
    with factory() as session:
        extraction = session.scalars(select(Extraction)).one()
        pages = list(session.scalars(select(Page).order_by(Page.number)))
        session.expunge_all()
    return {"outcome": outcome[0].to_json(), "requests": model.requests}, extraction, pages


def test_blank_pages_are_skipped_and_listed(
    invoice: Image.Image, tmp_path: Path, settings: Settings
) -> None:
    sheets = [invoice, scan(white_sheet(), seed=3, edge=True), invoice.rotate(180)]
    settings = settings.model_copy(update={"pages": PAGES})
    found, extraction, pages = run(pdf_of(tmp_path, sheets, "bundle.pdf"), settings)
    requests: list[VisionRequest] = found["requests"]  # type: ignore[assignment]
    assert requests and not any("page 2" in r.prompt for r in requests)  # no tile of page 2
    assert extraction.status == "needs_review"  # the scripted record is empty, not failed
    assert extraction.provenance["pages"]["blank"] == [2]
    upright = extraction.provenance["pages"]["upright"][0]
    assert upright["by"] in ("ink", "osd")  # an image in a PDF: no text layer to read
    assert upright | {"confidence": None, "by": None} == {
        "page": 3,
        "turned": 180,
        "by": None,
        "confidence": None,
        "skew": 0.0,
    }
    assert [p.rotation for p in pages] == [0, 0, 180]


def test_a_document_of_only_blank_pages_fails_as_blank(tmp_path: Path, settings: Settings) -> None:
    sheets = [scan(white_sheet(), seed=s, edge=s == 1, holes=True) for s in range(2)]
    found, extraction, _ = run(pdf_of(tmp_path, sheets, "separators.pdf"), settings)
    assert found["requests"] == []  # no model call, no tokens
    assert extraction.status == "failed" and extraction.error_category == "blank"
    assert "every page is blank (page 1, 2)" in (extraction.error_message or "")
    assert extraction.input_tokens == 0


def test_the_blank_stage_can_be_switched_off(tmp_path: Path, settings: Settings) -> None:
    settings = settings.model_copy(update={"pages": PagesSettings(blank=False)})
    found, extraction, _ = run(pdf_of(tmp_path, [white_sheet()], "white.pdf"), settings)
    assert found["requests"] and extraction.status != "failed"
