"""Which way is up, on the pages that fooled the old ink measure and from the PDF text layer:
an upright page is never turned by mistake; a page whose text runs sideways is turned."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pypdfium2 as pdfium
import pytest
from conftest import REPO
from fpdf import FPDF
from PIL import Image

from pipeline.ingest import ingest_file
from pipeline.pages import prepare_page
from pipeline.pages.guess import Guess
from pipeline.pages.ink import page_ink
from pipeline.pages.ocrvote import decide
from pipeline.pages.orientation import LEAN_DPI, ink_orientation, orient, text_orientation
from pipeline.render.raster import rasterize
from pipeline.render.words import WordsReader
from pipeline.settings import GroundingSettings, PagesSettings, RasterSettings, Settings
from pipeline.steps import render_all
from pipeline.types import PageImage, TextDirection

sys.path.insert(0, str(REPO / "bench"))
from _layouts import LAYOUTS

AUTO = PagesSettings(orientation="auto")
UNSURE = 0.3  # well under ink_min_confidence: what "not sure" must mean for a wrong answer
LINES = ["Invoice INV-2024-0042 from ACME Supplies GmbH", "Total due: 1,234.50 EUR by 2024-11-30"]


def render(path: Path, dpi: int = 200) -> Image.Image:
    pdf = pdfium.PdfDocument(str(path))
    try:
        return pdf[0].render(scale=dpi / 72, grayscale=True).to_pil().convert("L")
    finally:
        pdf.close()


@pytest.fixture(scope="module", params=list(LAYOUTS))
def layout(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Image.Image:
    path = tmp_path_factory.mktemp(request.param) / f"{request.param}.pdf"
    LAYOUTS[request.param](path)
    return render(path)


@pytest.mark.parametrize("turn", [0, 180])
def test_the_ink_measure_is_right_or_unsure_on_born_digital_layouts(
    layout: Image.Image, turn: int
) -> None:
    # The overhead bench's table page (digits, capitals and g/q/y) read as upside down before:
    # the x-height core reached the cap height, so only the descenders counted.
    page = layout if turn == 0 else layout.rotate(180)
    guess = ink_orientation(page_ink(page, 200, LEAN_DPI))
    assert guess.turn == turn or guess.confidence < UNSURE, guess


def test_the_overhead_table_page_is_left_upright_and_read_as_upright(tmp_path: Path) -> None:
    LAYOUTS["overhead-table"](tmp_path / "table.pdf")
    image = render(tmp_path / "table.pdf")
    guess = ink_orientation(page_ink(image, 200, LEAN_DPI))
    assert (guess.turn, guess.confidence >= AUTO.ink_min_confidence) == (0, True)
    path = tmp_path / "p0001-200dpi.png"
    image.save(path)
    done = prepare_page(PageImage(1, path, image.width, image.height, 200), AUTO)
    assert done.facts is not None and done.facts.turned == 0


# -- the text layer ----------------------------------------------------------------------------


def text_pdf(path: Path, drawn: list[int], rotate: list[int]) -> Path:
    """One page per entry: the text drawn turned `drawn` degrees counter-clockwise, the page's
    /Rotate set to `rotate` (clockwise)."""
    pdf = FPDF(format="A4")
    pdf.set_font("Helvetica", size=11)
    for angle in drawn:
        pdf.add_page()
        with pdf.rotation(angle, 105, 148):
            for row, line in enumerate(LINES * 3):
                pdf.text(40, 120 + 8 * row, line)
    pdf.output(str(path))
    doc = pdfium.PdfDocument(path.read_bytes())
    for index, degrees in enumerate(rotate):
        doc[index].set_rotation(degrees)
    doc.save(str(path))
    doc.close()
    return path


# (text drawn ccw, /Rotate cw) -> the clockwise turn that makes the rendered page upright
CASES = [
    ((0, 0), 0),  # upright
    ((90, 0), 90),  # text running up the page
    ((0, 180), 180),  # an upright page given /Rotate 180
    ((90, 90), 0),  # sideways text that /Rotate already stands upright: not turned twice
    ((0, 270), 90),  # /Rotate 270 lays upright text on its side
]


@pytest.mark.parametrize("renderer", ["poppler", "pdfium"])
def test_the_text_layer_says_which_way_the_rendered_page_reads(
    tmp_path: Path, renderer: str
) -> None:
    pdf = text_pdf(tmp_path / "turned.pdf", [c[0][0] for c in CASES], [c[0][1] for c in CASES])
    settings = RasterSettings(renderer=renderer, dpi=100)  # type: ignore[arg-type]
    pages = rasterize(ingest_file(pdf, settings), settings, tmp_path / "cache").pages
    assert [p.text.turn if p.text else None for p in pages] == [want for _, want in CASES]
    assert all(p.text is not None and p.text.share == 1.0 for p in pages)
    for page, (_, want) in zip(pages, CASES, strict=True):
        done = prepare_page(page, AUTO)
        assert done.facts is not None
        assert (done.facts.turned, done.facts.by) == (want, "text")
        assert done.rotation == (page.rotation + want) % 360
        sideways = want in (90, 270)
        size = (page.height, page.width) if sideways else (page.width, page.height)
        with Image.open(done.path) as upright:
            assert upright.size == size == (done.width, done.height)


def test_a_page_with_a_text_layer_is_not_turned_on_its_ink(tmp_path: Path) -> None:
    # an upright text layer over a page whose ink looks upside down: the text layer wins
    LAYOUTS["mono-table"](tmp_path / "table.pdf")
    image = render(tmp_path / "table.pdf").rotate(180)
    path = tmp_path / "p0001-200dpi.png"
    image.save(path)
    page = PageImage(1, path, image.width, image.height, 200, text=TextDirection(0, 500, 1.0))
    done = prepare_page(page, AUTO)
    assert done.facts is not None and (done.facts.turned, done.facts.by) == (0, "text")


def test_mixed_or_scant_text_is_not_a_reason_to_turn() -> None:
    assert text_orientation(None) is None
    assert text_orientation(TextDirection(90, 12, 1.0)) is None  # a stamp: ask the ink
    mixed = text_orientation(TextDirection(90, 400, 0.6))
    assert mixed is not None and (mixed.turn, mixed.by) == (0, "none")
    upright = text_orientation(TextDirection(0, 400, 0.55))
    assert upright is not None and (upright.turn, upright.by) == (0, "text")
    sideways = text_orientation(TextDirection(270, 400, 0.95))
    assert sideways is not None and (sideways.turn, sideways.by) == (270, "text")


def test_the_words_of_a_turned_page_land_on_its_turned_png(
    tmp_path: Path, settings: Settings
) -> None:
    # text running up a /Rotate 0 page, and an upright page given /Rotate 180: the stage turns
    # both PNGs; the text layer is read in the rendered frame and must be carried onto them
    pdf = text_pdf(tmp_path / "turned.pdf", [90, 0], [0, 180])
    settings = settings.model_copy(
        update={
            "pages": AUTO,
            "raster": RasterSettings(dpi=100),
            "grounding": GroundingSettings(ocr="never"),  # no OCR to fall back on
        }
    )
    file = ingest_file(pdf, settings.raster)
    pages = render_all(file, settings).pages
    assert [p.facts.turned if p.facts else None for p in pages] == [90, 180]
    words = WordsReader(file, pages, settings).result(pages)
    for page, found in zip(pages, words.pages, strict=True):
        assert (found.source, found.unavailable) == ("text_layer", None)
        assert (found.width, found.height) == (page.width, page.height)
        with Image.open(page.path) as image:
            ink = np.asarray(image.convert("L")) < 128
        boxes = [w.box for w in found.words]
        inked = [b for b in boxes if ink[b[1] : b[3], b[0] : b[2]].mean() > 0.05]
        assert len(inked) == len(boxes) > 20
        wide = sum(b[2] - b[0] > b[3] - b[1] for b in boxes)
        assert wide > 0.9 * len(boxes)  # words run left to right on the upright page


# -- the OCR vote ------------------------------------------------------------------------------

needs_tesseract = pytest.mark.skipif(shutil.which("tesseract") is None, reason="no tesseract")


@needs_tesseract
@pytest.mark.parametrize("turn", [0, 90])
def test_a_chart_that_ink_and_osd_leave_unsure_is_stood_upright_by_the_ocr_vote(
    turn: int,
) -> None:
    # a bar chart turned as bench/orientation.py turns it: too little text for the ink, OSD
    # names the right turn below its threshold (0.3-1.4); the vote reads the labels upright
    with Image.open(REPO / "sample_docs" / "chart-revenue-bar.png") as opened:
        chart = opened.convert("L")
    page = chart.rotate(-turn, expand=True) if turn else chart
    guess = orient(page, 150, AUTO)
    assert guess.turn == (360 - turn) % 360, guess  # the upright chart is not turned
    assert guess.by == "ocr" or turn == 0, guess


def test_the_ocr_vote_takes_only_a_clear_lead_of_enough_letters() -> None:
    clear = decide({0: 0, 90: 40, 180: 9, 270: 0})
    assert (clear.turn, clear.by) == (90, "ocr")
    upside_down = decide({0: 8, 90: 0, 180: 4, 270: 0})  # "Once upon a" / "uodn": too few
    assert (upside_down.turn, upside_down.by) == (0, "none")
    close = decide({0: 14, 90: 7, 180: 0, 270: 0})  # a chart's axis title read sideways
    assert (close.turn, close.by) == (0, "none")
    assert decide({0: 0, 90: 0, 180: 0, 270: 0}) == Guess(0, "none", 0.0)  # nothing read
