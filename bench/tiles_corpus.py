"""What the vision tower receives, per tiling strategy, over any folder of documents.

For every PDF and image under DIR, `docextract tiles` (its `export_tiles` function) tiles each
page with `anyres` and with `auto` (the default), and the manifest says per request the image
tokens and the x-height of the page's small print as the encoder sees it (pixels at the
encoder's input: about 7 px is where LLaVA-NeXT still reads 10 pt digits, see the legibility
bench). Printed per document and in total: requests, image tokens, and the median encoder
x-height for each strategy. No model runs.

    .venv/bin/python bench/tiles_corpus.py ../shared/corpus/invoices-real [sample_docs]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.cli.tiles import export_tiles
from pipeline.errors import InputError
from pipeline.settings import Settings

SUFFIXES = {".pdf", ".png", ".jpg", ".jpeg", ".tif", ".tiff"}
STRATEGIES = ("anyres", "auto")


def measure(path: Path, strategy: str, cache: Path, out: Path) -> tuple[int, int, list[float]]:
    """(requests, image tokens, encoder x-heights of the non-global requests) of one document."""
    settings = Settings(cache_dir=cache, tiling={"strategy": strategy})
    manifest = export_tiles(path, settings, out)
    requests = [r for page in manifest["pages"] for r in page["requests"]]
    heights = [
        r["encoder_x_height_px"]
        for r in requests
        if r["encoder_x_height_px"] is not None and not r["is_global"]
    ]
    return len(requests), sum(r["image_tokens"] for r in requests), heights


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folders", nargs="+", type=Path)
    args = parser.parse_args()
    totals = {s: [0, 0, []] for s in STRATEGIES}
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        print(f"{'document':42} {'strategy':8} {'requests':>8} {'tokens':>8} {'x-height px':>11}")
        for folder in args.folders:
            for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES):
                for strategy in STRATEGIES:
                    try:
                        count, tokens, heights = measure(path, strategy, cache, Path(tmp) / "t")
                    except InputError as exc:
                        print(f"{path.name[:42]:42} {strategy:8} cannot read: {exc.message}")
                        continue
                    total = totals[strategy]
                    total[0] += count  # type: ignore[operator]
                    total[1] += tokens  # type: ignore[operator]
                    total[2] += heights  # type: ignore[operator]
                    median = f"{statistics.median(heights):.1f}" if heights else "-"
                    print(f"{path.name[:42]:42} {strategy:8} {count:8} {tokens:8} {median:>11}")
    figures = []
    for strategy, (count, tokens, heights) in totals.items():
        median = statistics.median(heights) if heights else 0.0  # type: ignore[arg-type]
        figures.append(
            f"{strategy}_requests={count} {strategy}_tokens={tokens} "
            f"{strategy}_x_height_median_px={median:.1f}"
        )
    ratio = totals["auto"][1] / max(1, totals["anyres"][1])  # type: ignore[operator]
    print(" ".join(figures) + f" auto_vs_anyres_tokens={ratio:.2f}x")


if __name__ == "__main__":
    main()
