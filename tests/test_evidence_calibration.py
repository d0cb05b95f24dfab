"""Calibration metrics by hand, and the grounding bench's scoring of labelled truth."""

from __future__ import annotations

import importlib.util
import json
import random
import sys
from pathlib import Path
from types import ModuleType

import pytest

from pipeline.evaluation import load_ground_truth
from pipeline.evidence import (
    auroc,
    coverage_at_precision,
    expected_calibration_error,
    reliability_table,
)

CONF = [0.95, 0.9, 0.85, 0.6, 0.55, 0.2]
RIGHT = [True, True, False, True, False, False]


def test_reliability_table_by_hand() -> None:
    table = reliability_table(CONF, RIGHT)
    assert len(table) == 10
    bins = {round(b.low, 1): b for b in table if b.count}
    assert set(bins) == {0.2, 0.5, 0.6, 0.8, 0.9}
    assert (bins[0.9].count, bins[0.9].mean_confidence, bins[0.9].accuracy) == (
        2,
        pytest.approx(0.925),
        1.0,
    )
    assert (bins[0.8].count, bins[0.8].accuracy) == (1, 0.0)
    assert reliability_table([1.0], [True])[-1].count == 1  # 1.0 falls in the last bin
    assert table[0].mean_confidence is None and table[0].accuracy is None


def test_expected_calibration_error_by_hand() -> None:
    # bins: 0.9 (2, conf .925, acc 1) .075; 0.8 (1, .85, 0) .85; 0.6 (1, .6, 1) .4;
    # 0.5 (1, .55, 0) .55; 0.2 (1, .2, 0) .2 -> (2*.075 + .85 + .4 + .55 + .2) / 6
    expected = (2 * 0.075 + 0.85 + 0.4 + 0.55 + 0.2) / 6
    assert expected_calibration_error(CONF, RIGHT) == pytest.approx(expected)
    assert expected_calibration_error([], []) is None


def test_auroc_by_hand() -> None:
    # right: .95 .9 .6; wrong: .85 .55 .2. Pairs right > wrong: .95:3, .9:3, .6:2 -> 8 of 9.
    assert auroc(CONF, RIGHT) == pytest.approx(8 / 9)
    assert auroc([0.5, 0.5], [True, False]) == pytest.approx(0.5)  # a tie counts half
    assert auroc([0.9], [True]) is None
    with pytest.raises(ValueError):
        auroc([0.9], [True, False])


def test_coverage_at_precision_by_hand() -> None:
    # Accept .95 .9 -> 2/2 right; adding .85 -> 2/3. So 2 of 6 at 99%.
    assert coverage_at_precision(CONF, RIGHT, 0.99) == pytest.approx(2 / 6)
    # at 75%: .95 .9 .85 .6 -> 3/4 right: 4 of 6.
    assert coverage_at_precision(CONF, RIGHT, 0.75) == pytest.approx(4 / 6)
    # A tie cannot be split: both 0.9s or neither.
    assert coverage_at_precision([0.9, 0.9, 0.1], [True, False, True], 0.99) == 0.0


def _bench() -> ModuleType:
    path = Path(__file__).resolve().parent.parent / "bench" / "grounding.py"
    spec = importlib.util.spec_from_file_location("bench_grounding", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_bench_honours_labelled(tmp_path: Path) -> None:
    (tmp_path / "r.png").write_bytes(b"not read here")
    record = {
        "invoice_number": "A-1",
        "issue_date": "2018-03-05",
        "seller": {"name": "UNIHAKKA", "address": "somewhere", "tax_id": None},
        "line_items": [{"description": "Tea", "amount": "2.00"}],
        "total": "8.20",
    }
    truth = {"document": "r.png", "records": {"invoice": record}}
    (tmp_path / "r.json").write_text(json.dumps(truth))
    bench = _bench()
    (everything,) = load_ground_truth(tmp_path)
    paths = [p for _, p, _ in bench.labelled_values(everything)]
    assert "seller.address" in paths and "invoice_number" in paths
    truth["labelled"] = {"invoice": ["total", "seller.name", "seller.tax_id", "line_items"]}
    (tmp_path / "r.json").write_text(json.dumps(truth))
    (labelled,) = load_ground_truth(tmp_path)
    assert [p for _, p, _ in bench.labelled_values(labelled)] == [
        "seller.name",
        "line_items[0].description",
        "line_items[0].amount",
        "total",
    ]  # seller.tax_id is labelled but null: absent, nothing to ground


def test_bench_perturbations_differ_from_the_truth() -> None:
    bench = _bench()
    rng = random.Random(1)
    wrong = bench.perturbations("4654.14", "amount", ["4654.14", "17.00"], rng)
    assert set(wrong) == {"digit", "swap", "foreign", "made-up"}
    assert all(value != "4654.14" for value in wrong.values())
    assert wrong["foreign"] == "17.00"
    assert set(bench.perturbations("2025-03-14", "date", [], rng)) == {"date"}
