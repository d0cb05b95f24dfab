"""Peak memory while processing a 300-page PDF: flat in docextract, growing in a one-call load.

Three measurements in one run, each in its own process so peaks do not mix:
1. docextract: register + rasterize + tile + extract + store the whole PDF, in-process, with the
   scripted backend (it answers empty records: the model is not what this measures). The RSS of
   the process is sampled every 50 ms; the peak is reported after the first 50 pages and at the
   end (flat means those two are close), plus the render subprocesses' peak.
2. the same with the model the CLI builds (`--backend scripted`: the registry's backend behind
   the process-wide `BatchingModel`), so that whatever the CLI keeps is measured too.
3. `pdf2image.convert_from_path(path, dpi=200)` in one call (its default use).

    python bench/memory.py [--pages 300]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_pdf(path: Path, pages: int) -> None:
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_font("Helvetica", size=10)
    for page in range(pages):
        pdf.add_page()
        for line in range(50):
            pdf.cell(
                0,
                5,
                f"page {page + 1} line {line + 1}: 10 pt text of a long scanned report",
                new_x="LMARGIN",
                new_y="NEXT",
            )
    pdf.output(str(path))


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def run_docextract(pdf: Path, work: Path, cli_model: bool = False) -> dict[str, float]:
    from pipeline.backends.scripted import ScriptedModel, empty_record_json
    from pipeline.runner import process, register
    from pipeline.settings import Settings
    from pipeline.store.db import open_database, session_factory

    settings = Settings(
        db_url=f"sqlite:///{work / ('cli.db' if cli_model else 'bench.db')}",
        cache_dir=work / ("cli-cache" if cli_model else "cache"),
        raster={"max_pages": 1000},
        model={"backend": "scripted"},
    )
    pages_done = {"count": 0}
    samples: list[tuple[int, float]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            done = pages_done["count"] if not cli_model else _cli_requests(settings)
            samples.append((done, rss_mb()))
            time.sleep(0.05)

    def answer(request, number):  # type: ignore[no-untyped-def]
        pages_done["count"] += 1
        return empty_record_json(request.json_schema)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    factory = session_factory(open_database(settings.db_url.get_secret_value()))
    outcome = process(
        factory,
        register(factory, pdf, settings),
        settings,
        model=None if cli_model else ScriptedModel(answer, keep_requests=False),
    )
    seconds = time.perf_counter() - started
    stop.set()
    sampler.join()
    early = max((mb for n, mb in samples if n <= 50), default=0.0)
    return {
        "status": outcome[0].status,
        "pages": outcome[0].pages or 0,
        "seconds": seconds,
        "peak_first_50_pages_mb": early,
        "peak_mb": max(mb for _, mb in samples),
        "children_peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def _cli_requests(settings) -> int:  # type: ignore[no-untyped-def]
    """Requests the CLI's model answered so far (its batcher counts them)."""
    from pipeline.backends import get_model

    return int(get_model(settings).stats.requests)


def run_pdf2image(pdf: Path) -> dict[str, float]:
    from pdf2image import convert_from_path

    started = time.perf_counter()
    images = convert_from_path(str(pdf), dpi=200)
    return {
        "pages": len(images),
        "seconds": time.perf_counter() - started,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "children_peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def in_subprocess(kind: str, pdf: Path, work: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(pdf), str(work)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--child", nargs=3, metavar=("KIND", "PDF", "WORK"))
    args = parser.parse_args()
    if args.child:
        kind, pdf, work = args.child
        result = (
            run_pdf2image(Path(pdf))
            if kind == "pdf2image"
            else run_docextract(Path(pdf), Path(work), cli_model=kind == "cli")
        )
        print(json.dumps(result))
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        pdf = work / "long.pdf"
        make_pdf(pdf, args.pages)
        ours = in_subprocess("docextract", pdf, work)
        cli = in_subprocess("cli", pdf, work)
        theirs = in_subprocess("pdf2image", pdf, work)
    print(f"{args.pages}-page A4 PDF at 200 DPI; this machine ({Path('/proc/cpuinfo').exists()})")
    print(f"\n{'':44s} {'seconds':>8s} {'peak RSS MB':>12s} {'children MB':>12s}")
    print(
        f"{'docextract, after the first 50 pages':44s} {'':8s} "
        f"{ours['peak_first_50_pages_mb']:12.0f}"
    )
    print(
        f"{'docextract, whole document (' + ours['status'] + ')':44s} {ours['seconds']:8.1f} "
        f"{ours['peak_mb']:12.0f} {ours['children_peak_mb']:12.0f}"
    )
    print(
        f"{'docextract, the CLI model, first 50 pages':44s} {'':8s} "
        f"{cli['peak_first_50_pages_mb']:12.0f}"
    )
    print(
        f"{'docextract, the CLI model, whole document':44s} {cli['seconds']:8.1f} "
        f"{cli['peak_mb']:12.0f} {cli['children_peak_mb']:12.0f}"
    )
    print(
        f"{'pdf2image.convert_from_path, one call':44s} {theirs['seconds']:8.1f} "
        f"{theirs['peak_mb']:12.0f} {theirs['children_peak_mb']:12.0f}"
    )
    growth = ours["peak_mb"] / max(ours["peak_first_50_pages_mb"], 1.0)
    cli_growth = cli["peak_mb"] / max(cli["peak_first_50_pages_mb"], 1.0)
    print(
        f"\ndocextract peak at {args.pages} pages / at 50 pages: {growth:.2f}x "
        f"(the CLI model: {cli_growth:.2f}x); "
        f"pdf2image one-call peak / docextract peak: {theirs['peak_mb'] / ours['peak_mb']:.1f}x"
    )


if __name__ == "__main__":
    main()
