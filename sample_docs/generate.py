"""Write the sample documents and their ground truth, byte for byte the same on every run.

    .venv/bin/python sample_docs/generate.py            # (re)write the files beside this script
    .venv/bin/python sample_docs/generate.py --check    # exit 1 if a committed file differs

Each sample is built from its ground truth: schema instances are made first (with the arithmetic
computed, never typed in), then a layout draws them, and they are written beside the document as
`NAME.json`: `{"document": NAME.ext, "records": {schema: model_dump(mode="json")}}`. To add a
document, write a function that returns a `Sample` and add it to `SAMPLES`.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from _charts import energy_lines, headcount_grouped, revenue_bars
from _forms import expense_claim, supplier_registration
from _invoice_variants import invoice_french_discount, invoice_uk_scanned
from _invoices import invoice_born_digital, invoice_photo, invoice_scanned, invoice_two_page
from _render import Sample
from _tables import price_list, shipment_log

HERE = Path(__file__).resolve().parent

SAMPLES: tuple[Callable[[], Sample], ...] = (
    invoice_born_digital,
    invoice_scanned,
    invoice_photo,
    invoice_two_page,
    invoice_french_discount,
    invoice_uk_scanned,
    supplier_registration,
    expense_claim,
    price_list,
    shipment_log,
    revenue_bars,
    energy_lines,
    headcount_grouped,
)


# --- writing and checking -------------------------------------------------------------------------


def truth_json(sample: Sample) -> bytes:
    """The ground-truth file of `sample`: the document's name and one record per schema, each
    exactly `model_dump(mode="json")` (the format `docextract eval` reads)."""
    records = {truth.schema_name: truth.model_dump(mode="json") for truth in sample.truths}
    data = {"document": sample.name, "records": records}
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode()


def build() -> dict[str, bytes]:
    """Every file of the set, by file name: each document and its `NAME.json` ground truth."""
    files: dict[str, bytes] = {}
    for make in SAMPLES:
        sample = make()
        files[sample.name] = sample.render()
        files[f"{Path(sample.name).stem}.json"] = truth_json(sample)
    return files


def write(out: Path) -> list[Path]:
    """Write the whole set into `out` (created if missing); returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in build().items():
        (out / name).write_bytes(data)
        paths.append(out / name)
    return paths


def check(out: Path) -> list[str]:
    """Names of the generated files that are missing from `out` or differ there."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = write(Path(tmp))
        return [
            path.name
            for path in fresh
            if not (out / path.name).is_file()
            or not filecmp.cmp(path, out / path.name, shallow=False)
        ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="folder to write (default: here)")
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a file in --out differs"
    )
    args = parser.parse_args(argv)
    if args.check:
        stale = check(args.out)
        for name in stale:
            print(f"{args.out / name}: missing, or differs from a fresh one", file=sys.stderr)
        if stale:
            print("regenerate with: python sample_docs/generate.py", file=sys.stderr)
        return 1 if stale else 0
    for path in write(args.out):
        print(f"{path}  {path.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
