"""Rasterization: poppler-primary vs pdfium-primary vs `pdf2image.convert_from_path`, the cost of
starting a render subprocess, and page sizes against pdfinfo's.

1. Pages/s and peak RSS on a generated 100-page PDF: `pdf2image.convert_from_path(path, dpi)` in
   one call, `pipeline.render.raster.rasterize` with each primary renderer (cold cache), and a
   cached rerun. Each variant runs in a fresh child process; its peak RSS is the larger of the
   child's own and that of its largest descendant (render worker, pdftoppm), from getrusage.
   Then where a page's time goes, in this process on the first 20 pages: rendering alone
   (pdfium to a Pillow image; pdftoppm to PPM, 4 pages per call) and PNG encoding at zlib level 6
   (the cache's) and 1.
2. Start-up: median wall time of a render worker that does nothing (python + imports), of the
   'info' step (describe a 1-page PDF) per renderer, and of rasterizing a whole 1- and 5-page
   document per renderer (cold cache), so the start-up share of small documents shows.
3. Pixel sizes: pages of assorted sizes at many DPIs, each renderer alone; a page counts as exact
   when its PNG is `ceil(points * dpi / 72)` of pdfinfo's size on both sides. For comparison,
   pypdfium2's own `render(scale=dpi/72)`, which docextract does not use.

    .venv/bin/python bench/raster.py [--pages 100] [--dpi 200] [--repeat 7]
"""

from __future__ import annotations

import argparse
import json
import math
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

RENDERERS = ("poppler", "pdfium")
VARIANTS = (
    "pdf2image, one call",
    "docextract, poppler",
    "docextract, pdfium",
    "docextract, cached",
)
# Letter, A4, A5 landscape, and sizes whose pixels land near whole numbers.
SIZES = [(612, 792), (595.28, 841.89), (595.28, 419.53), (306, 396), (200, 100), (432.5, 288.25)]


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


def make_text_pdf(path: Path, pages: int, sizes: list[tuple[float, float]] | None = None) -> None:
    """Text-only pages (an invoice-like list), A4 unless `sizes` gives each page's (pt)."""
    from fpdf import FPDF

    pdf = FPDF(unit="pt")
    pdf.set_font("helvetica", size=10)
    for number in range(pages):
        pdf.add_page(format=sizes[number] if sizes else (595.28, 841.89))
        for line in range(min(35, int(pdf.h // 20) - 2)):
            pdf.text(30, 30 + 18 * line, f"{line + 1:3d} Widget {number}-{line}  qty 3  37.50")
    pdf.output(str(path))


# ---------------------------------------------------------------- 1. throughput, peak RSS


def child(variant: str, pdf: Path, cache: Path, dpi: int) -> dict[str, float]:
    """Run one variant in this process and measure it."""
    started = time.perf_counter()
    if variant == VARIANTS[0]:
        from pdf2image import convert_from_path

        pages = len(convert_from_path(pdf, dpi=dpi))
    else:
        from pipeline.ingest import ingest_file
        from pipeline.render.raster import rasterize
        from pipeline.settings import RasterSettings

        renderer = "pdfium" if variant == VARIANTS[2] else "poppler"
        settings = RasterSettings(dpi=dpi, renderer=renderer)
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


def throughput(tmp: Path, pages: int, dpi: int) -> dict[str, dict[str, float]]:
    pdf = tmp / "bench.pdf"
    make_pdf(pdf, pages)
    results = {}
    for variant in VARIANTS:
        # The cached variant reads the pages the pdfium run just wrote; the others start cold.
        cache = tmp / ("cache-pdfium" if variant in VARIANTS[2:] else f"cache-{len(results)}")
        results[variant] = run_child(variant, pdf, cache, dpi)
    print(f"\n1. {pages}-page generated A4 PDF (text + photo) at {dpi} DPI, one run each")
    print(
        f"{'variant':<24} {'pages':>5} {'seconds':>8} {'pages/s':>8} "
        f"{'peak RSS MB':>12} {'(own':>7} {'children)':>10}"
    )
    for variant, r in results.items():
        print(
            f"{variant:<24} {r['pages']:>5.0f} {r['seconds']:>8.2f} "
            f"{r['pages'] / r['seconds']:>8.1f} {_peak(r):>12.0f} {r['own_mb']:>7.0f} "
            f"{r['children_mb']:>10.0f}"
        )
    where_time_goes(pdf, tmp, dpi)
    return results


def where_time_goes(pdf: Path, tmp: Path, dpi: int, pages: int = 20) -> dict[str, float]:
    """Milliseconds per page of rendering alone and of PNG encoding (one thread each)."""
    import io

    import pypdfium2 as pdfium
    from pdf2image import convert_from_path

    doc = pdfium.PdfDocument(pdf)
    started = time.perf_counter()
    images = [doc[i].render(scale=dpi / 72).to_pil() for i in range(pages)]
    figures = {"render, pdfium": (time.perf_counter() - started) / pages}
    started = time.perf_counter()
    for first in range(1, pages + 1, 4):
        out = tmp / f"ppm-{first}"
        out.mkdir()
        convert_from_path(
            pdf, dpi=dpi, first_page=first, last_page=first + 3, fmt="ppm", output_folder=out
        )
    figures["render, pdftoppm to PPM + load"] = (time.perf_counter() - started) / pages
    for level in (6, 1):
        sizes, started = [], time.perf_counter()
        for image in images:
            buffer = io.BytesIO()
            image.save(buffer, format="PNG", compress_level=level)
            sizes.append(buffer.tell())
        figures[f"PNG encode, level {level}"] = (time.perf_counter() - started) / pages
        figures[f"PNG size KB, level {level}"] = statistics.mean(sizes) / 1024 / 1000
    print(f"\nWhere a page's time goes (first {pages} pages, one thread, in this process)")
    for what, value in figures.items():
        print(f"{what:<34} {1000 * value:>8.1f} {'KB' if 'KB' in what else 'ms'}")
    return figures


def _peak(result: dict[str, float]) -> float:
    return max(result["own_mb"], result["children_mb"])


# ---------------------------------------------------------------- 2. start-up


def _median_s(run: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def startup(tmp: Path, dpi: int, repeat: int) -> dict[str, float]:
    from pipeline.ingest import ingest_file
    from pipeline.render import raster
    from pipeline.render.client import Workers
    from pipeline.render.source import VerifiedSource
    from pipeline.settings import RasterSettings

    def empty_worker() -> None:
        request = {"op": "render", "kind": "pdf", "memory_mb": 4096, "work_dir": str(tmp)}
        with Workers(tmp) as workers:
            list(workers.run({**request, "steps": []}, lambda: time.monotonic() + 30))

    figures = {"empty worker (python + imports)": _median_s(empty_worker, repeat)}
    docs = {}
    for pages in (1, 5):
        docs[pages] = tmp / f"text-{pages}.pdf"
        make_text_pdf(docs[pages], pages)
    for renderer in RENDERERS:
        settings = RasterSettings(dpi=dpi, renderer=renderer)
        file = ingest_file(docs[1], settings)

        def info(settings: RasterSettings = settings, file: Any = file) -> None:
            with Workers(tmp) as workers, VerifiedSource(file.path, file.sha256, tmp) as source:
                deadline = time.monotonic() + 60
                raster._fetch_info(file, source, "pdf", settings, None, deadline, workers)

        figures[f"'info' step, 1-page PDF, {renderer}"] = _median_s(info, repeat)
        for pages, pdf in docs.items():
            file = ingest_file(pdf, settings)
            caches = (tmp / f"cache-{renderer}-{pages}-{n}" for n in range(repeat))

            def whole(
                settings: RasterSettings = settings, file: Any = file, caches: Any = caches
            ) -> None:
                raster.rasterize(file, settings, next(caches))

            figures[f"rasterize {pages}-page PDF, {renderer}"] = _median_s(whole, repeat)
    print(f"\n2. Start-up: median of {repeat} runs, text pages at {dpi} DPI, cold cache")
    print(f"{'what':<42} {'ms':>8}")
    for what, seconds in figures.items():
        print(f"{what:<42} {1000 * seconds:>8.1f}")
    return figures


# ---------------------------------------------------------------- 3. pixel sizes


def pixel_sizes(tmp: Path) -> dict[str, tuple[int, int]]:
    """(pages of exactly pdfinfo's size, pages checked) per renderer, over SIZES x DPIs."""
    from pipeline.ingest import ingest_file
    from pipeline.render.raster import rasterize
    from pipeline.settings import RasterSettings

    pdf = tmp / "sizes.pdf"
    make_text_pdf(pdf, len(SIZES), SIZES)
    listed = subprocess.run(
        ["pdfinfo", "-f", "1", "-l", str(len(SIZES)), str(pdf)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    points = [(float(w), float(h)) for w, h in re.findall(r"size:\s+([\d.]+) x ([\d.]+)", listed)]
    dpis = [36, 44, 72, 88, 96, 106, 150, 158, 194, 200, 212, 230, 300]
    tally = {}
    for renderer in RENDERERS:
        exact = checked = 0
        for dpi in dpis:
            settings = RasterSettings(dpi=dpi, renderer=renderer, fallback_renderer="none")
            result = rasterize(ingest_file(pdf, settings), settings, tmp / f"px-{renderer}")
            for page in result.pages:
                w, h = points[page.number - 1]
                want = (math.ceil(w * dpi / 72), math.ceil(h * dpi / 72))
                exact += (page.width, page.height) == want
                checked += 1
        tally[renderer] = (exact, checked)
    tally["pypdfium2 render(scale=dpi/72)"] = _naive_pdfium(pdf, points, dpis)
    print(f"\n3. Page sizes vs pdfinfo: {len(SIZES)} page sizes x DPIs {dpis}")
    for renderer, (exact, checked) in tally.items():
        print(f"{renderer:<32} {exact}/{checked} pages exactly ceil(points * dpi / 72)")
    return tally


def _naive_pdfium(pdf: Path, points: list[tuple[float, float]], dpis: list[int]) -> tuple[int, int]:
    """What pypdfium2's own scaling gives, for comparison (in this process: trusted file)."""
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(pdf)
    exact = checked = 0
    for dpi in dpis:
        for index, (w, h) in enumerate(points):
            bitmap = doc[index].render(scale=dpi / 72)
            exact += (bitmap.width, bitmap.height) == (
                math.ceil(w * dpi / 72),
                math.ceil(h * dpi / 72),
            )
            checked += 1
    return exact, checked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=100)
    parser.add_argument("--dpi", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--child", nargs=3, metavar=("VARIANT", "PDF", "CACHE"))
    args = parser.parse_args()
    if args.child:
        variant, pdf, cache = args.child
        print(json.dumps(child(variant, Path(pdf), Path(cache), args.dpi)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        results = throughput(Path(tmp), args.pages, args.dpi)
        figures = startup(Path(tmp), args.dpi, args.repeat)
        pixel_sizes(Path(tmp))
    base, poppler, pdfium = (results[v] for v in VARIANTS[:3])

    def rate(r: dict[str, float]) -> float:
        return r["pages"] / r["seconds"]

    start = figures["empty worker (python + imports)"]
    small = {r: figures[f"rasterize 1-page PDF, {r}"] for r in RENDERERS}
    print(
        f"\npdfium-primary {rate(pdfium):.1f} pages/s = {rate(pdfium) / rate(poppler):.2f}x "
        f"poppler-primary ({rate(poppler):.1f}) and {rate(pdfium) / rate(base):.2f}x "
        f"convert_from_path ({rate(base):.1f}); peak RSS {_peak(pdfium):.0f} / "
        f"{_peak(poppler):.0f} / {_peak(base):.0f} MB; a 1-page document takes "
        f"{1000 * small['pdfium']:.0f} ms with pdfium, {1000 * small['poppler']:.0f} ms with "
        f"poppler, of which its one worker start is {1000 * start:.0f} ms"
    )


if __name__ == "__main__":
    main()
