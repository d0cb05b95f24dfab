"""How well the pages stage stands pages upright, straightens them and finds blank ones.

    .venv/bin/python bench/orientation.py [--methods auto,ink,osd] [--no-corpus]

Pages: every page of the sample documents (rendered at 200 DPI with pdfium; the PNGs as they
are) and the scanned pages of the robustness corpus (../shared/corpus/robustness, or
DOCEXTRACT_SHARED/corpus/robustness: fax and G4 TIFFs, the fax PDF), each turned 0/90/180/270
and, for the sample pages, also scanned tilted by 3 degrees (noise, dust, JPEG: sample_docs/
_scans.py). A copy is right when the method's turn stands it upright. Figures per kind of page:
`documents` (the sample invoices, forms and tables, born-digital and scanned, and the corpus's
real scans of documents: pillow-pport_g4.tif, pillow-total-pages-zero.tif), `charts` (the three
sample charts), `other` (the corpus's photos, picture and one-word pages: a page left as rendered
counts as wrong when the copy was turned). Skew: the measured tilt of the tilted copies
within 0.3 degrees. Blank: noisy empty scans (dark lid edge, punch holes, bleed-through) and
the empty middle of a real fax page must be blank; every page with print must not. ms/page is
the measurement alone (ink, method, skew), not the PNG rewrite. The last line prints the figures.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from PIL import Image, ImageSequence

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "sample_docs"))

from _scans import scan, white_sheet  # noqa: E402

from pipeline.pages.blank import is_blank  # noqa: E402
from pipeline.pages.ink import page_ink  # noqa: E402
from pipeline.pages.orientation import measure_skew, orient  # noqa: E402
from pipeline.pages.prepare import _TRANSPOSE  # noqa: E402
from pipeline.settings import PagesSettings  # noqa: E402

SHARED = Path(os.environ.get("DOCEXTRACT_SHARED", REPO.parent / "shared"))
CORPUS = SHARED / "corpus" / "robustness"
SCANNED = (
    "qpdf-fax-decode-parms.pdf",
    "pillow-g4-multi.tiff",
    "pillow-total-pages-zero.tif",
    "pillow-pport_g4.tif",
)
TILT = 3.0


def sample_pages() -> Iterator[tuple[str, Image.Image, int]]:
    import pypdfium2 as pdfium

    for path in sorted((REPO / "sample_docs").iterdir()):
        if path.suffix == ".pdf":
            pdf = pdfium.PdfDocument(str(path))
            for index in range(len(pdf)):
                image = pdf[index].render(scale=200 / 72, grayscale=True).to_pil()
                yield f"{path.name}#{index + 1}", image.convert("L"), 200
            pdf.close()
        elif path.suffix == ".png":
            with Image.open(path) as image:
                yield path.name, image.convert("L"), 150


def corpus_pages() -> Iterator[tuple[str, Image.Image, int]]:
    import pypdfium2 as pdfium

    for name in SCANNED:
        path = CORPUS / name
        if not path.exists():
            continue
        if path.suffix == ".pdf":
            pdf = pdfium.PdfDocument(str(path))
            for index in range(len(pdf)):
                image = pdf[index].render(scale=200 / 72, grayscale=True).to_pil()
                yield f"{name}#{index + 1}", image.convert("L"), 200
            pdf.close()
            continue
        with Image.open(path) as tiff:
            for index, frame in enumerate(ImageSequence.Iterator(tiff)):
                dpi = int(frame.info.get("dpi", (200, 200))[0]) or 200
                yield f"{name}#{index + 1}", frame.convert("L"), dpi


DOCUMENT_SCANS = ("pillow-pport_g4.tif", "pillow-total-pages-zero.tif")


def kind_of(name: str, sample: bool) -> str:
    """documents, charts, or other (the corpus's photos, picture and one-word pages)."""
    if name.startswith("chart-"):
        return "charts"
    return "documents" if sample or name.startswith(DOCUMENT_SCANS) else "other"


def copies(pages: list[tuple[str, Image.Image, int, bool]]) -> Iterator[tuple]:
    """(name, image, dpi, turn that makes it upright, skew to find or None, kind). The skew
    to find is the page's own (sample scans are tilted already) less the tilt added."""
    for name, image, dpi, sample in pages:
        kind = kind_of(name, sample)
        own = measure_skew(page_ink(image, dpi), 5.0)
        for turn in (0, 90, 180, 270):
            turned = image if turn == 0 else image.rotate(-turn, expand=True)
            yield name, turned, dpi, (360 - turn) % 360, None, kind
            if sample:
                tilted = scan(image, seed=turn, tilt=TILT, turn=turn)
                yield name, tilted, dpi, (360 - turn) % 360, own - TILT, kind


def measure(method: str, items: list[tuple]) -> dict[str, float]:
    settings = PagesSettings(orientation=method)  # type: ignore[arg-type]
    skew_right = skew_n = 0
    by_kind: dict[str, list[bool]] = {}
    seconds = 0.0
    wrong: list[str] = []
    for name, image, dpi, want, tilt, kind in items:
        started = time.perf_counter()
        ink = page_ink(image, dpi)
        guess = orient(image, ink, dpi, settings)
        upright = image.transpose(_TRANSPOSE[guess.turn]) if guess.turn else image
        skew = measure_skew(page_ink(upright, dpi) if guess.turn else ink, settings.max_skew_deg)
        seconds += time.perf_counter() - started
        ok = guess.turn == want
        by_kind.setdefault(kind, []).append(ok)
        by_kind.setdefault("all", []).append(ok)
        if not ok:
            tilted = " tilted" if tilt is not None else ""
            wrong.append(
                f"{name}{tilted} [{kind}] (turn {want}: {guess.turn} by {guess.by} "
                f"{guess.confidence})"
            )
        if tilt is not None:
            skew_n += 1
            skew_right += ok and abs(skew - tilt) <= 0.3
    print(f"{method}: wrong on {len(wrong)}:\n  " + "\n  ".join(wrong), file=sys.stderr)
    return {
        **{k: 100 * sum(v) / len(v) for k, v in by_kind.items()},
        **{f"{k}_n": len(v) for k, v in by_kind.items()},
        "skew": 100 * skew_right / max(skew_n, 1),
        "ms": 1000 * seconds / len(items),
    }


def blank_figures(pages: list[tuple[str, Image.Image, int, bool]]) -> tuple[int, int, int, int]:
    """(blank sheets found, blank sheets, content pages called blank, content pages)."""
    limit = PagesSettings().blank_max_content_mm2
    invoice = next(image for name, image, _, _ in pages if name.startswith("invoice-born"))
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
    fax = [image for name, image, _, _ in pages if name == "pillow-total-pages-zero.tif#3"]
    sheets += [im.crop((0, im.height // 8, im.width, im.height * 7 // 8)) for im in fax]
    found = sum(is_blank(page_ink(sheet, 200), limit)[0] for sheet in sheets)
    content = [(image, dpi) for name, image, dpi, _ in pages]
    content += [
        (scan(image, seed=1, edge=True, holes=True), dpi) for _, image, dpi, s in pages if s
    ]
    dropped = sum(is_blank(page_ink(image, dpi), limit)[0] for image, dpi in content)
    return found, len(sheets), dropped, len(content)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="auto,ink,osd")
    parser.add_argument("--no-corpus", action="store_true")
    args = parser.parse_args()
    pages = [(n, im, d, True) for n, im, d in sample_pages()]
    if not args.no_corpus:
        pages += [(n, im, d, False) for n, im, d in corpus_pages()]
    items = list(copies(pages))
    found, sheets, dropped, content = blank_figures(pages)
    print(
        f"blank: {found}/{sheets} noisy empty sheets found blank; {dropped}/{content} pages "
        "with print called blank"
    )
    figures = {}
    for method in args.methods.split(","):
        figures[method] = m = measure(method, items)
        kinds = ", ".join(
            f"{k} {m[k]:.1f}% (n={m[k + '_n']:.0f})"
            for k in ("documents", "charts", "other", "all")
            if k in m
        )
        print(f"{method:>4}: upright: {kinds}; tilt found {m['skew']:.0f}%; {m['ms']:.0f} ms/page")
    print(
        "orientation: "
        + "; ".join(
            f"{k} {m['documents']:.1f}% of document pages upright ({m['all']:.1f}% of all "
            f"{m['all_n']:.0f}), {m['ms']:.0f} ms/page"
            for k, m in figures.items()
        )
        + f"; blank {found}/{sheets} found, {dropped}/{content} false"
    )


if __name__ == "__main__":
    main()
