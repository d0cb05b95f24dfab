"""Work outside the model: what share of a run the model is not generating, and where it goes.

Runs the real Prefect flow in this process (after a warm-up run, so the temporary Prefect server's
start-up is not counted) over a generated inbox of PDFs into a fresh SQLite database with
tiny-random, and times each stage by wrapping the pipeline functions. The model's busy time comes
from the batching layer (time inside generate). Stage times are thread-seconds (documents run
concurrently, so they can add up to more than the wall time).

    python bench/overhead.py [--documents 10] [--pages-per-document 5] [--workers 4]
                             [--grounding on|off]

`--grounding off` turns the page words and `vouch` off (DOCEXTRACT_GROUNDING__ENABLED=false), to
measure what grounding costs: run it alternating with `on` on the same machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fpdf import FPDF

from flows.prefect_env import apply_quiet_defaults

TIMES: dict[str, float] = defaultdict(float)


def timed(stage: str, function: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            TIMES[stage] += time.perf_counter() - started

    return wrapper


def make_inbox(folder: Path, documents: int, pages: int) -> None:
    for d in range(documents):
        pdf = FPDF(format="A4")
        pdf.set_font("Helvetica", size=10)
        for p in range(pages):
            pdf.add_page()
            pdf.cell(0, 8, f"INVOICE INV-{d:03d}  page {p + 1}", new_x="LMARGIN", new_y="NEXT")
            for line in range(35):
                pdf.cell(
                    0,
                    6,
                    f"{line + 1:3d} Widget {d}-{p}-{line}  qty {line % 5 + 1}  "
                    f"12.50  {12.5 * (line % 5 + 1):.2f}",
                    new_x="LMARGIN",
                    new_y="NEXT",
                )
        pdf.output(str(folder / f"doc{d:03d}.pdf"))


def instrument() -> None:
    import pipeline.extraction.run as extraction
    import pipeline.runner as runner
    import pipeline.steps as steps
    import pipeline.tiling.page as tiling

    runner.ingest_file = timed("ingest (hash, sniff)", runner.ingest_file)
    steps.rasterize = timed("rasterize (subprocess, PNG cache)", steps.rasterize)
    steps.repo.register_document = timed("store: register", steps.repo.register_document)
    steps.repo.claim = timed("store: claim", steps.repo.claim)
    steps.repo.record_pages = timed("store: pages", steps.repo.record_pages)
    steps.repo.save_outcome = timed("store: outcome", steps.repo.save_outcome)
    tiling.tile_page = timed("tile (cut tiles)", tiling.tile_page)
    extraction.parse_answer = timed("validate (Pydantic)", extraction.parse_answer)
    extraction.extraction_prompt = timed("prompt", extraction.extraction_prompt)
    import pipeline.render.words as words

    runner.vouch = timed("vouch (ground, confidence)", runner.vouch)
    words.WordsReader.result = timed("words: waited for at vouch", words.WordsReader.result)  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--documents", type=int, default=10)
    parser.add_argument("--pages-per-document", type=int, default=5)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--grounding", choices=("on", "off"), default="on")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        inbox, warmup = root / "inbox", root / "warmup"
        inbox.mkdir()
        warmup.mkdir()
        make_inbox(inbox, args.documents, args.pages_per_document)
        make_inbox(warmup, 1, 1)
        os.environ.update(
            DOCEXTRACT_DB_URL=f"sqlite:///{root / 'bench.db'}",
            DOCEXTRACT_CACHE_DIR=str(root / "cache"),
            HF_HUB_OFFLINE="1",
        )
        apply_quiet_defaults()
        from flows.extract import run_extraction
        from pipeline.backends import get_model
        from pipeline.settings import Settings

        overrides = {
            "model": {
                "name": "tiny-random",
                "batch_size": args.batch_size,
                "max_new_tokens": args.max_new_tokens,
            },
            "workers": args.workers,
            "grounding": {"enabled": args.grounding == "on"},
        }
        settings = Settings(**overrides)
        run_extraction([str(warmup)], overrides, settings)  # Prefect server, model load
        instrument()
        TIMES.clear()
        stats = get_model(settings).stats  # type: ignore[attr-defined]
        busy_before, prepare_before = stats.busy_s, stats.prepare_s
        batches_before, requests_before = stats.batches, stats.requests
        stats.first_start = None
        started = time.perf_counter()
        outcomes = run_extraction([str(inbox)], overrides, settings)
        wall = time.perf_counter() - started
        busy, prepare = stats.busy_s - busy_before, stats.prepare_s - prepare_before
        batches, requests = stats.batches - batches_before, stats.requests - requests_before
        assert stats.first_start is not None and stats.last_end is not None
        lead, tail = stats.first_start - started, started + wall - stats.last_end
    pages = args.documents * args.pages_per_document
    statuses = sorted({o.status for o in outcomes})
    print(
        f"{len(outcomes)} documents, {pages} pages, statuses {statuses}; "
        f"workers {args.workers}, batch {args.batch_size}, max_new_tokens {args.max_new_tokens}, "
        f"grounding {args.grounding}"
    )
    print(f"\n{'stage':40s} {'thread-s':>9s} {'ms/page':>8s}")
    print(f"{'model generate (busy)':40s} {busy:9.2f} {1000 * busy / pages:8.1f}")
    print(
        f"{'processor (overlapped with generate)':40s} {prepare:9.2f} {1000 * prepare / pages:8.1f}"
    )
    for stage, seconds in sorted(TIMES.items(), key=lambda kv: -kv[1]):
        print(f"{stage:40s} {seconds:9.2f} {1000 * seconds / pages:8.1f}")
    print(f"{'wall time of the flow':40s} {wall:9.2f} {1000 * wall / pages:8.1f}")
    gaps = wall - lead - tail - busy
    print("\nwhere the model idles (wall seconds)")
    print(f"{'before its first batch (start, 1st page)':40s} {lead:9.2f}")
    print(f"{'between batches':40s} {gaps:9.2f}")
    print(f"{'after its last batch (store, flow end)':40s} {tail:9.2f}")
    print(f"\n{batches} batches of {requests / max(batches, 1):.1f} requests on average")
    print(
        f"\npages/s {pages / wall:.2f}; model busy {100 * busy / wall:.1f}% of the wall time; "
        f"work outside the model (model idle) {100 * (1 - busy / wall):.1f}% (tiny-random on CPU)"
    )


if __name__ == "__main__":
    main()
