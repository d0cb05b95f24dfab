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

from pipeline.evidence.words import Word
from pipeline.ingest import ingest_file
from pipeline.pages import prepare_page
from pipeline.pages.guess import Guess
from pipeline.pages.ink import page_ink
from pipeline.pages.ocrvote import confident_letters, decide
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
    tilted = decide({0: 9, 90: 13, 180: 0, 270: 29})  # a tilted chart: 2.2x its axis title
    assert (tilted.turn, tilted.by) == (270, "ocr")
    assert decide({0: 0, 90: 0, 180: 0, 270: 0}) == Guess(0, "none", 0.0)  # nothing read


def test_a_few_letters_decide_only_when_no_other_turn_reads_any() -> None:
    alone = decide({0: 0, 90: 0, 180: 4, 270: 0})  # "Page1" upside down
    assert (alone.turn, alone.by) == (180, "ocr")
    assert decide({0: 0, 90: 0, 180: 3, 270: 0}).by == "none"  # one three-letter word
    assert decide({0: 0, 90: 3, 180: 6, 270: 0}).by == "none"  # another turn reads something


def one_word_page(tmp_path: Path, word: str) -> Image.Image:
    """An A4 page with one word at its top left (as pillow-g4-multi.tiff's "Page1"), at 200 DPI."""
    pdf = FPDF(format="A4")
    pdf.add_page()
    pdf.set_font("Times", size=14)
    pdf.text(25, 25, word)
    pdf.output(str(tmp_path / "word.pdf"))
    return render(tmp_path / "word.pdf")


@needs_tesseract
def test_a_one_word_page_turned_upside_down_is_stood_upright_by_the_ocr_vote(
    tmp_path: Path,
) -> None:
    # "Page1" (read "Page1" or "Pagel"): 4-5 letters, under MIN_LETTERS; they decide when no
    # other turn reads any
    upright = one_word_page(tmp_path, "Page1")
    guess = orient(upright.rotate(180), 200, AUTO)
    assert (guess.turn, guess.by) == (180, "ocr"), guess
    assert orient(upright, 200, AUTO).turn == 0


@needs_tesseract
def test_a_page_of_noise_is_left_as_rendered() -> None:
    # specks and short strokes: Tesseract may read garbage, but no confident word of 4 letters
    rng = np.random.default_rng(7)
    ink = np.full((2339, 1654), 255, np.uint8)
    for y, x in zip(rng.integers(0, 2330, 400), rng.integers(0, 1640, 400), strict=True):
        ink[y : y + rng.integers(2, 9), x : x + rng.integers(2, 14)] = 0
    guess = orient(Image.fromarray(ink), 200, AUTO)
    assert (guess.turn, guess.by) == (0, "none"), guess


def test_the_ocr_vote_counts_the_letters_of_confident_alphanumeric_words() -> None:
    def word(text: str, confidence: float = 0.9) -> Word:
        return Word(text, (0, 0, 1, 1), confidence)

    assert confident_letters((word("Page1"),)) == 4  # alphanumeric: its letters count
    assert confident_letters((word("Page1", 0.7),)) == 0  # not confident
    assert confident_letters((word("ab1"), word("2024"), word("Page-1"))) == 0  # too short, no
    assert confident_letters((word("upon"), word("a"), word("Once"))) == 8  # letters, not words
