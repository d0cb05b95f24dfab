"""How well the pages stage stands pages upright, straightens them and finds blank ones.

    DOCEXTRACT_SHARED=/work/shared .venv/bin/python bench/orientation.py \
        [--methods auto,text,ink,osd,ocr-vote] [--no-corpus]

Pages, each turned 0/90/180/270 (a copy is right when the method's turn stands it upright):
- the sample documents (PDF pages rendered at 200 DPI with pdfium, the PNGs as they are), the
  born-digital layouts of bench/_layouts.py (the overhead bench's table page, a monospaced
  table, right-aligned numbers, all-caps headings, a boxed form) and, with the corpus, the PDF
  invoices and receipt photos of corpus/invoices-real and the scans of corpus/robustness (fax
  and G4 TIFFs, the fax PDF; DOCEXTRACT_SHARED or ../shared);
- a PDF page is turned by its /Rotate, as a mis-rotated PDF arrives, so its text layer turns
  with it (the text method reads it); the sample pages are also "scanned" 3 degrees tilted
  (noise, dust, JPEG: sample_docs/_scans.py), as images without a text layer.
Kinds of page: `documents`, `charts` (the three sample charts), `few words` (a picture with a
caption, a page of one word or one line), and `no text` (a line, a row of icons): a page with
no text has no "up" that a text-based method can know; it is reported apart and is not in the
goal, which is over the pages that carry text (`with text`). `wrong turns` counts copies turned
the wrong way (the costly mistake: a page left as rendered only misses a turn), `upright turned`
the upright copies among them. Skew: the measured tilt of the tilted copies within 0.3 degrees.
Blank: noisy empty scans (dark lid edge, punch holes, bleed-through) and the empty middle of a
real fax page must be blank; every page with print must not. ms/page is the measurement alone
(text direction, ink, method, skew), not the PNG rewrite. The last line prints the figures.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageSequence

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "sample_docs"))
sys.path.insert(0, str(REPO / "bench"))

from _layouts import make_layouts  # noqa: E402
from _scans import scan, white_sheet  # noqa: E402

from pipeline.pages.blank import is_blank  # noqa: E402
from pipeline.pages.ink import page_ink  # noqa: E402
from pipeline.pages.orientation import measure_skew, orient  # noqa: E402
from pipeline.pages.prepare import _TRANSPOSE  # noqa: E402
from pipeline.render.textdirection import text_direction  # noqa: E402
from pipeline.settings import PagesSettings  # noqa: E402
from pipeline.types import TextDirection  # noqa: E402

SHARED = Path(os.environ.get("DOCEXTRACT_SHARED", REPO.parent / "shared"))
CORPUS = SHARED / "corpus" / "robustness"
INVOICES = SHARED / "corpus" / "invoices-real"
SCANNED = (
    "qpdf-fax-decode-parms.pdf",
    "pillow-g4-multi.tiff",
    "pillow-total-pages-zero.tif",
    "pillow-pport_g4.tif",
)
# The robustness corpus's scans that are not documents, by what they carry (looked at).
FEW_WORDS = (
    "pillow-g4-multi.tiff",  # "Page1", "Page2", "Page3"
    "qpdf-fax-decode-parms.pdf#1",  # one line: "Once upon a qoww."
    "qpdf-fax-decode-parms.pdf#4",  # a screenshot of code over a caption
    "qpdf-fax-decode-parms.pdf#5",  # a cat photo, a caption of two words
    "qpdf-fax-decode-parms.pdf#6",
    "qpdf-fax-decode-parms.pdf#7",  # a large "1", a caption
    "qpdf-fax-decode-parms.pdf#8",
    "qpdf-fax-decode-parms.pdf#9",  # a picture over a one-line caption
    "qpdf-fax-decode-parms.pdf#10",  # a magazine page: a photo, a short column of small print
)
NO_TEXT = ("qpdf-fax-decode-parms.pdf#2", "qpdf-fax-decode-parms.pdf#3")  # a line; icons
KINDS = ("documents", "charts", "few words", "with text", "no text")
TILT = 3.0
DPI = 200


@dataclass(frozen=True)
class Page:
    """A page as found (upright), and for a PDF page where to read it again turned."""

    name: str
    image: Image.Image
    dpi: int
    kind: str
    pdf: tuple[Path, int] | None = None  # (file, 0-based index)
    tilted: bool = False  # also make tilted scans of it


@dataclass(frozen=True)
class Copy:
    name: str
    image: Image.Image
    dpi: int
    want: int  # the clockwise turn that stands it upright
    skew: float | None  # the tilt to find, for a tilted copy
    kind: str
    text: TextDirection | None


def pdf_pages(path: Path, kind: str, tilted: bool) -> Iterator[Page]:
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(str(path))
    for index in range(len(pdf)):
        image = pdf[index].render(scale=DPI / 72, grayscale=True).to_pil().convert("L")
        yield Page(f"{path.name}#{index + 1}", image, DPI, kind, (path, index), tilted)
    pdf.close()


def sample_pages(layouts: Path) -> Iterator[Page]:
    for path in [*sorted((REPO / "sample_docs").iterdir()), *make_layouts(layouts)]:
        kind = "charts" if path.name.startswith("chart-") else "documents"
        if path.suffix == ".pdf":
            yield from pdf_pages(path, kind, tilted=path.parent != layouts)
        elif path.suffix == ".png":
            with Image.open(path) as image:
                yield Page(path.name, image.convert("L"), 150, kind, None, True)


def corpus_pages() -> Iterator[Page]:
    for path in sorted(INVOICES.glob("*.pdf")):
        yield from pdf_pages(path, "documents", tilted=False)
    for path in sorted(INVOICES.glob("*.jpg")):
        with Image.open(path) as image:
            yield Page(path.name, image.convert("L"), 200, "documents")
    for name in SCANNED:
        path = CORPUS / name
        if not path.exists():
            continue
        if path.suffix == ".pdf":
            for page in pdf_pages(path, "", tilted=False):
                yield Page(page.name, page.image, page.dpi, kind_of(page.name), page.pdf)
            continue
        with Image.open(path) as tiff:
            for index, frame in enumerate(ImageSequence.Iterator(tiff)):
                dpi = int(frame.info.get("dpi", (DPI, DPI))[0]) or DPI
                name = f"{path.name}#{index + 1}"
                yield Page(name, frame.convert("L"), dpi, kind_of(name))


def kind_of(name: str) -> str:
    """documents, few words or no text: what a scanned page of the robustness corpus carries."""
    if name in NO_TEXT:
        return "no text"
    few = name in FEW_WORDS or name.startswith(FEW_WORDS[0])
    return "few words" if few else "documents"


def copies(pages: list[Page]) -> Iterator[Copy]:
    """Each page turned four ways (a PDF page by its /Rotate, its text layer with it), and the
    tilted scans. The skew to find is the page's own (sample scans are tilted already) less
    the tilt added."""
    for page in pages:
        own = measure_skew(page_ink(page.image, page.dpi), 5.0) if page.tilted else 0.0
        for turn in (0, 90, 180, 270):
            want = (360 - turn) % 360
            image, text = turned(page, turn)
            yield Copy(page.name, image, page.dpi, want, None, page.kind, text)
            if page.tilted:
                tilted = scan(page.image, seed=turn, tilt=TILT, turn=turn)
                yield Copy(page.name, tilted, page.dpi, want, own - TILT, page.kind, None)


def turned(page: Page, turn: int) -> tuple[Image.Image, TextDirection | None]:
    """`page` turned `turn` degrees clockwise, and the direction of its text layer then."""
    if page.pdf is None:
        return (page.image if turn == 0 else page.image.rotate(-turn, expand=True)), None
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(str(page.pdf[0]))
    try:
        sheet = pdf[page.pdf[1]]
        sheet.set_rotation((sheet.get_rotation() + turn) % 360)
        image = sheet.render(scale=DPI / 72, grayscale=True).to_pil().convert("L")
        text = text_direction(sheet)
    finally:
        pdf.close()
    return image, TextDirection(**text) if text else None


def measure(method: str, items: list[Copy]) -> dict[str, float]:
    settings = PagesSettings(orientation=method)  # type: ignore[arg-type]
    skew_right = skew_n = wrong_turns = upright_turned = 0
    by_kind: dict[str, list[bool]] = {}
    seconds = 0.0
    wrong: list[str] = []
    for item in items:
        started = time.perf_counter()
        guess = orient(item.image, item.dpi, settings, item.text)
        upright = item.image.transpose(_TRANSPOSE[guess.turn]) if guess.turn else item.image
        skew = measure_skew(page_ink(upright, item.dpi), settings.max_skew_deg)
        seconds += time.perf_counter() - started
        ok = guess.turn == item.want
        by_kind.setdefault(item.kind, []).append(ok)
        if item.kind != "no text":
            by_kind.setdefault("with text", []).append(ok)
        by_kind.setdefault("all", []).append(ok)
        if not ok:
            tilted = " tilted" if item.skew is not None else ""
            if guess.turn:
                wrong_turns += 1
                upright_turned += item.want == 0
            wrong.append(
                f"{'TURNED WRONG ' if guess.turn else ''}{item.name}{tilted} [{item.kind}] "
                f"(turn {item.want}: {guess.turn} by {guess.by} {guess.confidence})"
            )
        if item.skew is not None:
            skew_n += 1
            skew_right += ok and abs(skew - item.skew) <= 0.3
    print(f"{method}: wrong on {len(wrong)}:\n  " + "\n  ".join(wrong), file=sys.stderr)
    return {
        **{k: 100 * sum(v) / len(v) for k, v in by_kind.items()},
        **{f"{k}_n": len(v) for k, v in by_kind.items()},
        "wrong_turns": wrong_turns,
        "upright_turned": upright_turned,
        "skew": 100 * skew_right / max(skew_n, 1),
        "ms": 1000 * seconds / len(items),
    }


def blank_figures(pages: list[Page]) -> tuple[int, int, int, int]:
    """(blank sheets found, blank sheets, content pages called blank, content pages)."""
    limit = PagesSettings().blank_max_content_mm2
    invoice = next(p.image for p in pages if p.name.startswith("invoice-born"))
    sheets = [
        scan(
            white_sheet(),
            seed=s,
            tilt=(s % 5) - 2,
            edge=s % 2 == 0,
            holes=s % 3 == 0,
            bleed=invoice if s % 4 == 1 else None,
        )
        for s in range(20)
    ]
    fax = [p.image for p in pages if p.name == "pillow-total-pages-zero.tif#3"]
    sheets += [im.crop((0, im.height // 8, im.width, im.height * 7 // 8)) for im in fax]
    found = sum(is_blank(page_ink(sheet, 200), limit)[0] for sheet in sheets)
    content = [(p.image, p.dpi) for p in pages]
    content += [(scan(p.image, seed=1, edge=True, holes=True), p.dpi) for p in pages if p.tilted]
    dropped = sum(is_blank(page_ink(image, dpi), limit)[0] for image, dpi in content)
    return found, len(sheets), dropped, len(content)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="auto,text,ink,osd")
    parser.add_argument("--no-corpus", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as layouts:
        pages = list(sample_pages(Path(layouts)))
        if not args.no_corpus:
            pages += list(corpus_pages())
        items = list(copies(pages))
    found, sheets, dropped, content = blank_figures(pages)
    print(
        f"blank: {found}/{sheets} noisy empty sheets found blank; {dropped}/{content} pages "
        "with print called blank"
    )
    figures = {}
    for method in args.methods.split(","):
        figures[method] = m = measure(method, items)
        kinds = ", ".join(f"{k} {m[k]:.1f}% (n={m[k + '_n']:.0f})" for k in KINDS if k in m)
        print(
            f"{method:>4}: upright: {kinds}; wrong turns {m['wrong_turns']:.0f} (upright pages "
            f"turned {m['upright_turned']:.0f}); tilt found {m['skew']:.0f}%; "
            f"{m['ms']:.0f} ms/page"
        )
    print(
        "orientation: "
        + "; ".join(
            f"{k} {m['with text']:.1f}% of {m['with text_n']:.0f} pages with text upright "
            f"({m['documents']:.1f}% of documents), {m['wrong_turns']:.0f} wrong turns, "
            f"{m['ms']:.0f} ms/page"
            for k, m in figures.items()
        )
        + f"; blank {found}/{sheets} found, {dropped}/{content} false"
    )


if __name__ == "__main__":
    main()
