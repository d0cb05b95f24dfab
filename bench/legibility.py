"""Legibility at the encoder input, per tiling strategy, read by an independent reader.

For every sample document and strategy, `docextract tiles` (its `export_tiles` function) writes the
images the vision tower receives for each request; Tesseract then reads each request's crops
stitched back together (the canvas the language model sees as one grid of features, cut to the
image's own area so the processor's black padding does not count) and its global view. What the
reader finds in at least one of a page's inputs counts as recovered. Compared, on the same pages:

- `llava-1.5`: the page padded to a square (CLIP mean colour) and resized to one 336 px tile;
- `anyres`: the whole page through LLaVA-NeXT's own processor (what the seed code did);
- `grid`: the default grid, 3 full-width bands overlapping by 10%;
- `auto`: the default tiler (target x-height 7 px).
Every strategy runs with its default settings, so within the default page budget (3x anyres).

Ground truth: the words of the born-digital PDFs' text layers (`pdftotext`, per page), and the key
values of every document's ground-truth JSON in their printed form (dates as printed, amounts with
the document's separators, without the currency sign: `14 March 2025`, `3,783.85`, `1.084,48`).
The reader sees exactly the encoder's pixels ("1x"); a second reading of the same images
enlarged 3x (bicubic) shows how much a stronger reader gets from the same pixels.

    .venv/bin/python bench/legibility.py          # about 2-3 minutes on 2 cores
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from PIL import Image

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "sample_docs"
sys.path.insert(0, str(SAMPLES))
from _render import NumberFormat, date_dots, date_long_en, date_us  # noqa: E402

from pipeline.cli.tiles import export_tiles  # noqa: E402
from pipeline.settings import Settings  # noqa: E402

# The printed formats of each sample (as sample_docs/generate.py draws them).
DOCUMENTS: dict[str, tuple[NumberFormat, Callable[[date], str]]] = {
    "invoice-born-digital.pdf": (NumberFormat(",", ".", "€{}"), date_long_en),
    "invoice-two-page.pdf": (NumberFormat("'", ".", "CHF {}"), date_dots),
    "invoice-scanned.pdf": (NumberFormat(".", ",", "{} €"), date_dots),
    "invoice-photo.png": (NumberFormat(",", ".", "${}"), date_us),
    "invoice-fr-discount.pdf": (
        NumberFormat(" ", ",", "{} €", parentheses=True),
        lambda day: day.strftime("%d/%m/%Y"),
    ),
    "invoice-uk-scanned.pdf": (NumberFormat(",", ".", "£{}"), date_long_en),
}
SCANNED = ("invoice-scanned.pdf", "invoice-uk-scanned.pdf")  # no text layer
STRATEGIES: dict[str, dict[str, Any] | None] = {
    "llava-1.5": None,
    "anyres": {"strategy": "anyres"},
    "grid": {"strategy": "grid"},
    "auto": {"strategy": "auto"},
}
DENSE, SPARSE = ("invoice-two-page.pdf", 1), ("invoice-two-page.pdf", 2)
KEY_FIELDS = ("invoice_number", "issue_date", "due_date", "purchase_order")
MONEY_FIELDS = ("subtotal", "total", "amount_due")
CLIP_MEAN = (122, 116, 104)  # LLaVA-1.5 pads to a square with the image processor's mean
UPSCALE = 2
PSM = "11"  # sparse text: finds words in tables and scattered fields in any order


@dataclass
class PageResult:
    tokens: int
    texts: list[str] = field(default_factory=list)  # reader output at 1x, one per image
    texts_up: list[str] = field(default_factory=list)  # at UPSCALE


def ocr(image: Image.Image) -> str:
    """Tesseract's reading of `image` (single-threaded, so the bench's threads share the cores)."""
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    result = subprocess.run(
        ["tesseract", "stdin", "stdout", "--psm", PSM],
        input=buffer.getvalue(),
        capture_output=True,
        check=True,
        env={**os.environ, "OMP_THREAD_LIMIT": "1"},
    )
    return result.stdout.decode("utf-8", "replace")


def encoder_inputs(
    manifest: dict[str, Any], folder: Path
) -> dict[int, tuple[int, list[Image.Image]]]:
    """Per page: (image tokens, the images read): each request's canvas (unpadded) and global."""
    pages = {}
    for page in manifest["pages"]:
        images = []
        for request in page["requests"]:
            with Image.open(folder / request["files"]["canvas"]) as canvas:
                images.append(canvas.crop(tuple(request["content_box"])).convert("L"))
            with Image.open(folder / request["files"]["global"]) as view:
                images.append(view.convert("L"))
        pages[page["page"]] = (page["image_tokens"], images)
    return pages


def llava15_inputs(manifest: dict[str, Any]) -> dict[int, tuple[int, list[Image.Image]]]:
    """The LLaVA-1.5 view of each page: padded to a square, resized to 336 px; 576 tokens."""
    pages = {}
    for page in manifest["pages"]:
        with Image.open(page["image"]) as image:
            rgb = image.convert("RGB")
        side = max(rgb.size)
        square = Image.new("RGB", (side, side), CLIP_MEAN)
        square.paste(rgb, ((side - rgb.width) // 2, (side - rgb.height) // 2))
        pages[page["page"]] = (576, [square.resize((336, 336), Image.Resampling.BICUBIC)])
    return pages


def read_all(
    inputs: dict[tuple[str, str, int], tuple[int, list[Image.Image]]],
) -> dict[tuple[str, str, int], PageResult]:
    jobs = []
    for key, (_, images) in inputs.items():
        for image in images:
            big = image.resize(
                (image.width * UPSCALE, image.height * UPSCALE), Image.Resampling.BICUBIC
            )
            jobs += [(key, False, image), (key, True, big)]
    results = {key: PageResult(tokens) for key, (tokens, _) in inputs.items()}
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        texts = list(pool.map(lambda job: ocr(job[2]), jobs))
    for (key, upscaled, _), text in zip(jobs, texts, strict=True):
        (results[key].texts_up if upscaled else results[key].texts).append(text)
    return results


def words(text: str) -> set[str]:
    """Normalised words: casefolded, outer punctuation stripped, at least 2 characters."""
    out = set()
    for raw in text.split():
        word = raw.strip(".,:;()[]|\"'").casefold()
        if len(word) >= 2 and re.search(r"\w", word):
            out.add(word)
    return out


def page_words(pdf: Path, page: int) -> set[str]:
    text = subprocess.run(
        ["pdftotext", "-f", str(page), "-l", str(page), str(pdf), "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return words(text)


def key_values(name: str) -> list[str]:
    """The ground truth's key values of document `name`, as printed on it."""
    numbers, date_format = DOCUMENTS[name]
    truth = json.loads((SAMPLES / name).with_suffix(".json").read_text())["records"]["invoice"]
    values = [truth[f] for f in KEY_FIELDS if truth[f] and not f.endswith("date")]
    values += [date_format(date.fromisoformat(truth[f])) for f in KEY_FIELDS if "date" in f]
    values += [numbers.number(Decimal(truth[f])) for f in MONEY_FIELDS if truth[f]]
    if truth["iban"]:
        values.append(truth["iban"])
    return list(dict.fromkeys(values))


def found(value: str, text: str) -> bool:
    flat = " ".join(text.split())
    return value in flat or (" " in value and value.replace(" ", "") in flat.replace(" ", ""))


def export(name: str, tmp: Path) -> dict[tuple[str, str, int], tuple[int, list[Image.Image]]]:
    """The encoder inputs of every strategy for document `name` (pages rendered once)."""
    inputs = {}
    cache = tmp / "cache"
    for strategy, tiling in STRATEGIES.items():
        settings = Settings(cache_dir=cache, tiling=tiling or {"strategy": "anyres"})
        out = tmp / strategy / name
        manifest = export_tiles(SAMPLES / name, settings, out)
        pages = llava15_inputs(manifest) if tiling is None else encoder_inputs(manifest, out)
        for number, value in pages.items():
            inputs[(strategy, name, number)] = value
    return inputs


def run() -> None:
    started = time.perf_counter()
    inputs: dict[tuple[str, str, int], tuple[int, list[Image.Image]]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="legibility-") as tmp,
        ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool,
    ):
        for part in pool.map(lambda name: export(name, Path(tmp)), DOCUMENTS):
            inputs.update(part)
    exported = time.perf_counter()
    results = read_all(inputs)
    read = time.perf_counter()
    images = sum(len(v[1]) for v in inputs.values())
    print(
        f"{exported - started:.0f} s to cut and export, {read - exported:.0f} s to read "
        f"{images} images twice, {os.cpu_count()} cores\n"
    )
    report(results)


Results = dict[tuple[str, str, int], PageResult]  # (strategy, document, page) -> readings


def key_hits(results: Results, strategy: str, name: str, upscaled: bool) -> int:
    """Key values of document `name` found in any reading of any of its pages."""
    pages = [r for (s, n, _), r in results.items() if s == strategy and n == name]
    text = "\n".join(t for r in pages for t in (r.texts_up if upscaled else r.texts))
    return sum(found(value, text) for value in key_values(name))


def word_share(results: Results, strategy: str) -> float:
    """Share of the text-layer words of the born-digital pages found by the 1x reader."""
    seen = recovered = 0
    for (s, name, page), result in results.items():
        if s != strategy or name in SCANNED or not name.endswith(".pdf"):
            continue
        expected = page_words(SAMPLES / name, page)
        got = set().union(*(words(t) for t in result.texts))
        seen, recovered = seen + len(expected), recovered + len(expected & got)
    return recovered / seen


def summarize(results: Results, strategy: str) -> dict[str, float]:
    total = sum(len(key_values(name)) for name in DOCUMENTS)
    tokens = [r.tokens for (s, _, _), r in results.items() if s == strategy]
    return {
        "words": word_share(results, strategy),
        "keys": sum(key_hits(results, strategy, n, False) for n in DOCUMENTS) / total,
        "keys_up": sum(key_hits(results, strategy, n, True) for n in DOCUMENTS) / total,
        "tokens": sum(tokens) / len(tokens),
        "dense": results[(strategy, *DENSE)].tokens,
        "sparse": results[(strategy, *SPARSE)].tokens,
    }


def report(results: Results) -> None:
    version = subprocess.run(["tesseract", "--version"], capture_output=True, text=True)
    print(f"reader: {version.stdout.splitlines()[0]} --psm {PSM}")
    print(f"\nkey values found per document (reader at 1x / enlarged {UPSCALE}x)")
    short = [name.split(".")[0].removeprefix("invoice-") for name in DOCUMENTS]
    print(f"{'strategy':10}" + "".join(f"{name:>15}" for name in short))
    for strategy in STRATEGIES:
        cells = [
            f"{key_hits(results, strategy, n, False)}/{len(key_values(n))} "
            f"{key_hits(results, strategy, n, True)}/{len(key_values(n))}"
            for n in DOCUMENTS
        ]
        print(f"{strategy:10}" + "".join(f"{cell:>15}" for cell in cells))
    summary = {strategy: summarize(results, strategy) for strategy in STRATEGIES}
    print(
        f"\n{'strategy':10}{'words':>7}{'keys':>7}{f'keys {UPSCALE}x':>9}{'tokens/page':>13}"
        f"{'dense A4':>10}{'sparse A4':>11}"
    )
    for strategy, row in summary.items():
        print(
            f"{strategy:10}{row['words']:>7.0%}{row['keys']:>7.0%}{row['keys_up']:>9.0%}"
            f"{row['tokens']:>13,.0f}{row['dense']:>10,}{row['sparse']:>11,}"
        )
    auto, anyres = summary["auto"], summary["anyres"]
    print(
        f"\nauto vs anyres: key values {auto['keys']:.0%} vs {anyres['keys']:.0%} (reader at 1x), "
        f"{auto['keys_up']:.0%} vs {anyres['keys_up']:.0%} (enlarged {UPSCALE}x); image tokens "
        f"x{auto['dense'] / anyres['dense']:.2f} on the dense A4 page, "
        f"x{auto['sparse'] / anyres['sparse']:.2f} on the sparse one "
        f"(sparse/dense x{auto['sparse'] / auto['dense']:.2f})"
    )


if __name__ == "__main__":
    run()
