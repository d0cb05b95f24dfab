"""Rasterization: pages/s and peak RSS of `pipeline.raster.rasterize` against
`pdf2image.convert_from_path(path, dpi=200)` in one call, on a generated 100-page PDF.

Each variant runs in a fresh child process; its peak RSS is the larger of the child's own and
that of its largest descendant (render worker, pdftoppm), from getrusage. Run:

    .venv/bin/python bench/raster.py [--pages 100] [--dpi 200]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = ("pdf2image, one call", "docextract, cold cache", "docextract, cached")


def make_pdf(path: Path, pages: int) -> None:
    """A4 pages, each with a heading, a paragraph of text and a 1000x700 px photo-like image."""
    from fpdf import FPDF
    from PIL import Image

    photo = path.with_suffix(".jpg")
    Image.merge("RGB", [Image.effect_noise((1000, 700), 40 + 10 * i) for i in range(3)]).save(
        photo, quality=85
    )
    pdf = FPDF()
    for number in range(1, pages + 1):
        pdf.add_page()
        pdf.set_font("helvetica", "B", 16)
        pdf.cell(0, 10, f"Invoice page {number}", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("helvetica", size=10)
        pdf.multi_cell(0, 5, "Item, quantity, unit price and amount. " * 30)
        pdf.image(str(photo), x=20, y=120, w=170)
    pdf.output(str(path))


def child(variant: str, pdf: Path, cache: Path, dpi: int) -> dict[str, float]:
    """Run one variant in this process and measure it."""
    started = time.perf_counter()
    if variant == VARIANTS[0]:
        from pdf2image import convert_from_path

        pages = len(convert_from_path(pdf, dpi=dpi))
    else:
        from pipeline.ingest import ingest_file
        from pipeline.raster import rasterize
        from pipeline.settings import RasterSettings

        settings = RasterSettings(dpi=dpi)
        pages = len(rasterize(ingest_file(pdf, settings), settings, cache).pages)
    seconds = time.perf_counter() - started
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux -> MiB
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"pages": pages, "seconds": seconds, "own_mb": own, "children_mb": children}


def run_child(variant: str, pdf: Path, cache: Path, dpi: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", variant, str(pdf), str(cache), "--dpi", str(dpi)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=100)
    parser.add_argument("--dpi", type=int, default=200)
    parser.add_argument("--child", nargs=3, metavar=("VARIANT", "PDF", "CACHE"))
    args = parser.parse_args()
    if args.child:
        variant, pdf, cache = args.child
        print(json.dumps(child(variant, Path(pdf), Path(cache), args.dpi)))
        return

    with tempfile.TemporaryDirectory() as tmp:
        pdf = Path(tmp) / "bench.pdf"
        make_pdf(pdf, args.pages)
        results = {v: run_child(v, pdf, Path(tmp) / "cache", args.dpi) for v in VARIANTS}

    print(f"{args.pages}-page generated A4 PDF at {args.dpi} DPI, one run each\n")
    print(
        f"{'variant':<24} {'pages':>5} {'seconds':>8} {'pages/s':>8} "
        f"{'peak RSS MB':>12} {'(own':>7} {'children)':>10}"
    )
    for variant, r in results.items():
        peak = max(r["own_mb"], r["children_mb"])
        print(
            f"{variant:<24} {r['pages']:>5.0f} {r['seconds']:>8.2f} "
            f"{r['pages'] / r['seconds']:>8.1f} {peak:>12.0f} {r['own_mb']:>7.0f} "
            f"{r['children_mb']:>10.0f}"
        )
    base, ours = results[VARIANTS[0]], results[VARIANTS[1]]
    speed = (ours["pages"] / ours["seconds"]) / (base["pages"] / base["seconds"])
    memory = max(base["own_mb"], base["children_mb"]) / max(ours["own_mb"], ours["children_mb"])
    print(
        f"\nratios: docextract pages/s = {speed:.2f}x pdf2image's; "
        f"pdf2image peak RSS = {memory:.1f}x docextract's"
    )


if __name__ == "__main__":
    main()
