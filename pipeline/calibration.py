"""How well the stored per-field confidence predicts that a field is right, per schema.

For `docextract eval` (issue 14, section 5): each scalar leaf of a predicted record that has a
stored confidence (`field_confidence`, written by `vouch`) and is labelled in the truth is one
outcome: (confidence, exact match after `evaluation.normalize`). A list item's field is compared
with the field of the truth item it was matched to (items matched greedily, most similar first,
as the list metrics match them); a predicted item with no partner is wrong. Per schema:
a reliability table (ten confidence bins: count, mean confidence, accuracy), the expected
calibration error, the AUROC of confidence for "this field is right", and the coverage at
which precision reaches 99% (the share of fields a clerk could accept unseen).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pipeline.evaluation import Case, SchemaReport, covers, greedy_match, normalize
from pipeline.evidence import (
    auroc,
    coverage_at_precision,
    expected_calibration_error,
    leaves,
    reliability_table,
)

TARGET_PRECISION = 0.99
_FIRST_INDEX = re.compile(r"^([^\[]+)\[(\d+)\](.*)$")


def field_outcomes(case: Case) -> list[tuple[float, bool]]:
    """(confidence, right) for each labelled leaf of the case's prediction with a confidence."""
    if not case.predicted or not case.evidence:
        return []
    matches: dict[str, dict[int, int]] = {}
    out = []
    for path, value in leaves(case.predicted):
        entry = case.evidence.get(path)
        if not isinstance(entry, dict) or entry.get("confidence") is None:
            continue
        if not covers(case.labelled, path):
            continue
        expected = _truth_at(case, path, matches)
        out.append((float(entry["confidence"]), normalize(expected) == normalize(value)))
    return out


def _truth_at(case: Case, path: str, matches: dict[str, dict[int, int]]) -> Any:
    """The truth value the predicted leaf at `path` is compared with (None: none)."""
    found = _FIRST_INDEX.match(path)
    if found is None:
        return _lookup(case.truth, path)
    key, index, rest = found.group(1), int(found.group(2)), found.group(3)
    if key not in matches:
        truth_items = _lookup(case.truth, key) or []
        predicted_items = _lookup(case.predicted, key) or []
        pairs = greedy_match(truth_items, predicted_items, _similarity)
        matches[key] = {j: i for i, j in pairs}
    partner = matches[key].get(index)
    if partner is None:
        return None
    return _lookup((_lookup(case.truth, key) or [])[partner], rest.lstrip("."))


def _similarity(truth: Any, predicted: Any) -> float:
    """Share of the two items' leaves (by path) that are equal."""
    a, b = dict(leaves(truth)), dict(leaves(predicted))
    paths = set(a) | set(b)
    if not paths:
        return 1.0
    return sum(normalize(a.get(p)) == normalize(b.get(p)) for p in paths) / len(paths)


def _lookup(value: Any, path: str) -> Any:
    """The value at `path` (`seller.name`, `[2]`, `points[1].value`) in nested dicts/lists."""
    for key, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path):
        if index:
            if not isinstance(value, list) or int(index) >= len(value):
                return None
            value = value[int(index)]
        else:
            if not isinstance(value, dict):
                return None
            value = value.get(key)
    return value


def calibration(outcomes: list[tuple[float, bool]]) -> dict[str, Any]:
    """The calibration figures of a set of outcomes (see the module docstring)."""
    confidences = [c for c, _ in outcomes]
    right = [ok for _, ok in outcomes]
    table = reliability_table(confidences, right)
    ece, area = expected_calibration_error(confidences, right), auroc(confidences, right)
    return {
        "fields": len(outcomes),
        "accuracy": round(sum(right) / len(right), 4) if right else None,
        "ece": None if ece is None else round(ece, 4),
        "auroc": None if area is None else round(area, 4),
        "coverage_at_99_precision": round(
            coverage_at_precision(confidences, right, TARGET_PRECISION), 4
        ),
        "reliability": [
            {
                "bin": f"{b.low:.1f}-{b.high:.1f}",
                "count": b.count,
                "mean_confidence": None
                if b.mean_confidence is None
                else round(b.mean_confidence, 4),
                "accuracy": None if b.accuracy is None else round(b.accuracy, 4),
            }
            for b in table
        ],
    }


def add_calibration(reports: dict[str, SchemaReport], cases: Iterable[Case]) -> None:
    """Set each schema report's `calibration` from the cases' stored confidences (left None
    for a schema none of whose cases has any)."""
    outcomes: dict[str, list[tuple[float, bool]]] = {}
    for case in cases:
        found = field_outcomes(case)
        if found:
            outcomes.setdefault(case.schema.schema_name, []).extend(found)
    for name, pairs in outcomes.items():
        if name in reports:
            reports[name].calibration = calibration(pairs)
