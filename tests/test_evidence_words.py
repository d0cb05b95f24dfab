"""Page words: text-layer boxes on the rendered ink, OCR words, limits, unusable text layers."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pypdfium2 as pdfium
import pytest
from pdf2image import convert_from_path
from PIL import Image

from pipeline.evidence import (
    Limits,
    OcrUnavailable,
    PageWords,
    Word,
    ocr_words,
    text_layer_usable,
    text_layer_words,
)
from pipeline.evidence.ocr import parse_tsv

SAMPLES = Path(__file__).resolve().parent.parent / "sample_docs"
BORN_DIGITAL = SAMPLES / "invoice-born-digital.pdf"


def render(path: Path, dpi: int) -> Image.Image:
    """The page as the pipeline renders it: pdftoppm, crop box, grayscale."""
    return convert_from_path(str(path), dpi=dpi, use_cropbox=True, grayscale=True)[0]


def inked_share(words: PageWords, image: Image.Image) -> float:
    ink = np.asarray(image) < 128
    inked = [w for w in words.words if ink[w.box[1] : w.box[3], w.box[0] : w.box[2]].any()]
    return len(inked) / len(words.words)


def word(words: PageWords, text: str) -> Word:
    return next(w for w in words.words if w.text == text)


def test_text_layer_boxes_land_on_the_printed_value() -> None:
    words = text_layer_words(BORN_DIGITAL, 1, 100)
    image = render(BORN_DIGITAL, 100)
    assert (words.width, words.height) == image.size
    assert inked_share(words, image) > 0.95
    x0, y0, x1, y1 = word(words, "INV-2025-0318").box
    ink = np.asarray(image) < 128
    inside = ink[y0:y1, x0:x1].mean()
    assert inside > 0.1  # a word's box is mostly glyphs
    assert ink[y0:y1, x1 + 60 : x1 + 200].mean() < inside / 4  # and it ends where the ink does
    assert words.source == "text_layer" and not words.truncated


@pytest.mark.parametrize(("rotation", "crop"), [(90, None), (180, (30, 50, 500, 700)), (270, None)])
def test_rotated_and_cropped_pages_line_up(
    tmp_path: Path, rotation: int, crop: tuple | None
) -> None:
    doc = pdfium.PdfDocument(str(BORN_DIGITAL))
    doc[0].set_rotation(rotation)
    if crop:
        doc[0].set_cropbox(*crop)
    target = tmp_path / "turned.pdf"
    doc.save(str(target))
    doc.close()
    words = text_layer_words(target, 1, 100)
    image = render(target, 100)
    assert (words.width, words.height) == image.size
    assert inked_share(words, image) > 0.95


def test_ocr_words_match_the_text_layer() -> None:
    image = render(BORN_DIGITAL, 150).convert("RGB")
    ocr = ocr_words(image, page=1, dpi=150)
    layer = text_layer_words(BORN_DIGITAL, 1, 150)
    assert ocr.source == "ocr" and len(ocr.words) > 100
    found, printed = word(ocr, "INV-2025-0318"), word(layer, "INV-2025-0318")
    assert found.confidence is not None and found.confidence > 0.5
    left, top = max(found.box[0], printed.box[0]), max(found.box[1], printed.box[1])
    right, bottom = min(found.box[2], printed.box[2]), min(found.box[3], printed.box[3])
    overlap = max(0, right - left) * max(0, bottom - top)
    area = (printed.box[2] - printed.box[0]) * (printed.box[3] - printed.box[1])
    assert overlap > 0.6 * area


def test_missing_tesseract_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(OcrUnavailable, match="tesseract-ocr"):
        ocr_words(Image.new("L", (50, 50), 255))


def test_hostile_text_layer_is_capped_and_fast(tmp_path: Path) -> None:
    from fpdf import FPDF

    pdf = FPDF(unit="pt", format="A4")
    pdf.add_page()
    pdf.set_font("helvetica", size=2)
    for i in range(20_000):
        pdf.text(5 + (i % 200) * 2.9, 5 + (i // 200) * 8.2, "wd")
    target = tmp_path / "hostile.pdf"
    pdf.output(str(target))
    start = time.perf_counter()
    words = text_layer_words(target, 1, 200, limits=Limits(max_words=5000))
    assert time.perf_counter() - start < 3.0
    assert len(words.words) == 5000 and words.truncated
    capped = text_layer_words(target, 1, 200, limits=Limits(max_chars=1000, max_word_chars=1))
    assert capped.truncated and len(capped.words) <= 1000
    assert all(len(w.text) == 1 for w in capped.words)


def test_empty_and_garbage_text_layers_are_unusable() -> None:
    image = render(BORN_DIGITAL, 72)
    good = text_layer_words(BORN_DIGITAL, 1, 72)
    assert text_layer_usable(good, image) == (True, "usable")
    empty = PageWords(1, *image.size, 72, "text_layer")
    assert text_layer_usable(empty, image)[0] is False
    garbage = PageWords(
        1, *image.size, 72, "text_layer",
        tuple(Word("\ufffd\ue000\x01", w.box) for w in good.words),
    )  # fmt: skip
    usable, reason = text_layer_usable(garbage, image)
    assert not usable and "garbage" in reason


def test_text_layer_that_misses_the_ink_is_unusable() -> None:
    """A scan with an invisible OCR layer that is somewhere else than the printed text."""
    image = render(SAMPLES / "invoice-scanned.pdf", 72)
    assert text_layer_words(SAMPLES / "invoice-scanned.pdf", 1, 72).words == ()
    foreign = text_layer_words(BORN_DIGITAL, 1, 72)
    wrong = PageWords(1, *image.size, 72, "text_layer", tuple(foreign.words[:12]))
    usable, reason = text_layer_usable(wrong, image)
    assert not usable and "ink" in reason


def test_page_words_round_trip_through_json() -> None:
    words = text_layer_words(BORN_DIGITAL, 1, 72)
    import json

    again = PageWords.from_json(json.loads(json.dumps(words.to_json())))
    assert again == words


def test_tesseract_tsv_parsing() -> None:
    header = "\t".join(
        [
            "level",
            "page_num",
            "block_num",
            "par_num",
            "line_num",
            "word_num",
            "left",
            "top",
            "width",
            "height",
            "conf",
            "text",
        ]
    )
    rows = [
        "5\t1\t1\t1\t1\t1\t10\t20\t30\t12\t96.5\tTotal",
        "5\t1\t1\t1\t1\t2\t50\t20\t40\t12\t91\t8.20",
        "4\t1\t1\t1\t2\t0\t10\t40\t90\t12\t-1\t",
        "5\t1\t2\t1\t1\t1\t10\t60\t30\t12\t-1\t ",
        "5\t1\t2\t1\t1\t2\t11\t61\t31\t13\t40\tRM",
    ]
    words, truncated = parse_tsv("\n".join([header, *rows]), factor=2)
    assert [w.text for w in words] == ["Total", "8.20", "RM"]
    assert words[0].box == (5, 10, 20, 16) and words[0].confidence == pytest.approx(0.965)
    assert [w.line for w in words] == [0, 0, 1] and not truncated
    capped, truncated = parse_tsv("\n".join([header, *rows]), limits=Limits(max_words=1))
    assert len(capped) == 1 and truncated


@pytest.mark.parametrize(("turn", "skew"), [(90, 0.0), (180, -1.5), (270, 3.0), (0, 2.0)])
def test_turned_boxes_follow_the_page_as_the_pages_stage_turns_it(turn: int, skew: float) -> None:
    box = (50, 60, 150, 90)
    image = Image.new("L", (400, 300), 255)
    image.paste(0, box)
    words = PageWords(1, 400, 300, 100, "text_layer", (Word("ACME", box),))
    turned = words.turned(turn, skew)
    # as pipeline.pages.prepare turns the PNG: transpose, then rotate by the skew
    transpose = {90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180}
    transpose[270] = Image.Transpose.ROTATE_90
    page = image.transpose(transpose[turn]) if turn else image
    page = page.rotate(skew, Image.Resampling.BICUBIC, fillcolor=255)
    assert (turned.width, turned.height) == page.size
    ink = Image.eval(page, lambda v: 255 if v < 128 else 0).getbbox()
    assert ink is not None
    assert all(abs(a - b) <= 2 for a, b in zip(turned.words[0].box, ink, strict=True))
