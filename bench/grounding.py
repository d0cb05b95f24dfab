"""Grounding without a model: are the truth values found on the page, are wrong values caught?

    python bench/grounding.py DIR [DIR...] [--make-scans]

Over folders with ground truth in the `docextract eval` format (a truth's optional
`"labelled": {"<schema>": [paths]}` is honoured: only labelled paths count; null truth is
skipped). Words: the PDF text layer (born-digital), else Tesseract OCR of the page rendered at
200 DPI (scans, photos, image-only PDFs). `--make-scans` also renders every born-digital PDF,
adds paper tone and noise, rotates it 0.5-1.5 degrees, saves it as JPEG quality 70 in a temp
folder and measures it as a scan.

Reports (1) grounding recall: share of truth values found (exact, normalized or fuzzy) on the
right page (where the text layer prints it; any page when unknown) with a box; (2) perturbed
values of must-be-grounded fields (one digit changed, two digits swapped, another document's
value, a made-up amount, a shifted date): share flagged not_found, and true values flagged; (3)
ms per page of the text layer and of OCR. The last line is the summary.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pipeline.evaluation import GroundTruth, covers, load_ground_truth  # noqa: E402
from pipeline.evidence import (  # noqa: E402
    DocumentIndex,
    PageWords,
    ground_value,
    kind_function,
    leaves,
    must_be_grounded,
    ocr_words,
    text_layer_usable,
    text_layer_words,
)
from pipeline.evidence.perturb import perturbations  # noqa: E402
from schemas import get_schema  # noqa: E402

DPI = 200
FOUND = ("exact", "normalized", "fuzzy")


def labelled_values(truth: GroundTruth) -> list[tuple[str, str, Any]]:
    """(schema, path, value) of every non-null truth leaf that counts: all of them, or only
    those under a path of the truth file's `"labelled"` list for that schema (`seller.name`
    covers itself; `line_items` covers every item's fields): `pipeline.evaluation.covers`."""
    out = []
    for schema, record in truth.records.items():
        paths = truth.labelled_paths(get_schema(schema))
        out += [(schema, p, v) for p, v in leaves(record) if covers(paths, p)]
    return out


@dataclass
class Totals:
    found: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    counted: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    caught: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    perturbed: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    false_alarms: int = 0
    true_checked: int = 0
    text_ms: list[float] = field(default_factory=list)
    ocr_ms: list[float] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)


def document_words(path: Path, totals: Totals) -> tuple[str, list[PageWords], list[Any]]:
    """("born_digital" | "scanned", words per page, rendered pages)."""
    from pdf2image import convert_from_path
    from PIL import Image

    if path.suffix.lower() == ".pdf":
        images = convert_from_path(str(path), dpi=DPI, use_cropbox=True)
        pages = []
        for number, image in enumerate(images, 1):
            words = text_layer_words(path, number, DPI)
            totals.text_ms.append(words.seconds * 1000)
            pages.append((words, image))
        if all(text_layer_usable(w, img)[0] for w, img in pages):
            return "born_digital", [w for w, _ in pages], images
    else:
        images = [Image.open(path).convert("RGB")]
    return "scanned", ocr_pages(images, totals), images


def ocr_pages(images: list[Any], totals: Totals) -> list[PageWords]:
    pages = []
    for number, image in enumerate(images, 1):
        words = ocr_words(image, number, DPI)
        totals.ocr_ms.append(words.seconds * 1000)
        pages.append(words)
    return pages


def make_scan(image: Any, rng: random.Random, folder: Path, name: str) -> Any:
    """A "scanned" copy: paper tone, noise, 0.5-1.5 degree tilt, JPEG quality 70."""
    import numpy as np
    from PIL import Image

    gray = np.asarray(image.convert("L"), dtype=np.float32) * 0.88 + 18
    noisy = gray + np.random.default_rng(rng.randint(0, 2**31)).normal(0, 9, gray.shape)
    scan = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
    angle = rng.uniform(0.5, 1.5) * rng.choice([-1, 1])
    scan = scan.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=230)
    target = folder / f"{name}.jpg"
    scan.save(target, quality=70)
    return Image.open(target)


def measure(
    truth: GroundTruth,
    category: str,
    pages: list[PageWords],
    expected: dict[tuple[str, str], set[int]],
    foreign: dict[tuple[str, str], list[Any]],
    totals: Totals,
    rng: random.Random,
) -> None:
    index = DocumentIndex.build(pages)
    for schema_name, path, value in labelled_values(truth):
        schema = get_schema(schema_name)
        kind = kind_function(schema)(path, value)
        if kind == "skip":
            continue
        grounding = ground_value(path, value, kind, index)
        right = expected.get((schema_name, path))
        ok = grounding.kind in FOUND and grounding.box is not None
        ok = ok and (not right or grounding.page in right)
        totals.counted[category] += 1
        totals.found[category] += ok
        if not ok:
            totals.misses.append(
                f"  {category} {truth.document.name} {path}={value!r}: {grounding.kind}"
            )
        if not must_be_grounded(schema, path):
            continue
        totals.true_checked += 1
        totals.false_alarms += grounding.kind == "not_found"
        others = foreign.get((schema_name, path), [])
        for name, wrong in perturbations(value, kind, others, rng).items():
            totals.perturbed[name] += 1
            totals.caught[name] += ground_value(path, wrong, kind, index).kind == "not_found"


def run(folders: list[Path], make_scans: bool, seed: int = 0) -> Totals:
    rng = random.Random(seed)
    totals = Totals()
    truths = [t for folder in folders for t in load_ground_truth(folder)]
    foreign: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for truth in truths:
        for schema_name, path, value in labelled_values(truth):
            foreign[(schema_name, path)].append(value)
    with tempfile.TemporaryDirectory(prefix="grounding-scans-") as tmp:
        for truth in truths:
            category, pages, images = document_words(truth.document, totals)
            expected = _pages_of(truth, pages) if category == "born_digital" else {}
            measure(truth, category, pages, expected, foreign, totals, rng)
            print(f"{truth.document.name}: {category}, {len(pages)} page(s)", flush=True)
            if make_scans and category == "born_digital":
                scans = [
                    make_scan(img, rng, Path(tmp), f"{truth.document.stem}-{n}")
                    for n, img in enumerate(images, 1)
                ]
                measure(truth, "scanned", ocr_pages(scans, totals), expected, foreign, totals, rng)
                print(f"{truth.document.name}: made scan, {len(scans)} page(s)", flush=True)
    return totals


def _pages_of(truth: GroundTruth, pages: list[PageWords]) -> dict[tuple[str, str], set[int]]:
    """Where the text layer prints each truth value: the right pages for its scan."""
    out = {}
    for schema_name, path, value in labelled_values(truth):
        kind = kind_function(get_schema(schema_name))(path, value)
        found = set()
        for page in pages:
            grounding = ground_value(path, value, kind, DocumentIndex.build([page]))
            if grounding.kind in FOUND and grounding.page is not None:
                found.add(grounding.page)
        out[(schema_name, path)] = found
    return out


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}" if whole else "n/a"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--make-scans", action="store_true", help="also measure scanned copies")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    totals = run(args.folders, args.make_scans, args.seed)
    print("misses:", *totals.misses, sep="\n")
    for category in sorted(totals.counted):
        found, counted = totals.found[category], totals.counted[category]
        print(f"recall {category}: {found}/{counted} = {_pct(found, counted)}%")
    for name in sorted(totals.perturbed):
        caught, perturbed = totals.caught[name], totals.perturbed[name]
        print(f"perturbation {name}: caught {caught}/{perturbed} = {_pct(caught, perturbed)}%")
    print(f"true values flagged: {totals.false_alarms}/{totals.true_checked}")
    mean = lambda xs: sum(xs) / len(xs) if xs else 0.0  # noqa: E731
    print(
        f"pages: text layer {len(totals.text_ms)}, OCR {len(totals.ocr_ms)}; "
        f"{time.perf_counter() - started:.0f} s in all"
    )
    caught, perturbed = sum(totals.caught.values()), sum(totals.perturbed.values())
    born = _pct(totals.found["born_digital"], totals.counted["born_digital"])
    scanned = _pct(totals.found["scanned"], totals.counted["scanned"])
    print(
        f"grounding_recall_born_digital={born}% grounding_recall_scanned={scanned}% "
        f"caught={_pct(caught, perturbed)}% "
        f"false_alarms={_pct(totals.false_alarms, totals.true_checked)}% "
        f"text_layer_ms={mean(totals.text_ms):.1f} ocr_ms={mean(totals.ocr_ms):.0f}"
    )


if __name__ == "__main__":
    main()
