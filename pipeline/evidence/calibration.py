"""How well per-field confidence predicts that a field is right: pure functions over pairs.

Inputs are parallel sequences: `confidences` in [0, 1] and `correct` (bool: the field matched
the ground truth). Used by `docextract eval` per schema and by the benches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Bin:
    """One reliability bin `[low, high)` (the last one includes 1.0)."""

    low: float
    high: float
    count: int
    mean_confidence: float | None
    accuracy: float | None


def _check(confidences: Sequence[float], correct: Sequence[bool]) -> None:
    if len(confidences) != len(correct):
        raise ValueError(f"{len(confidences)} confidences but {len(correct)} outcomes")


def reliability_table(
    confidences: Sequence[float], correct: Sequence[bool], bins: int = 10
) -> list[Bin]:
    """`bins` equal-width confidence bins: count, mean confidence and accuracy of each (None
    for an empty bin). Raises ValueError for sequences of different lengths."""
    _check(confidences, correct)
    members: list[list[tuple[float, bool]]] = [[] for _ in range(bins)]
    for conf, ok in zip(confidences, correct, strict=True):
        members[min(bins - 1, max(0, int(conf * bins)))].append((conf, ok))
    table = []
    for number, items in enumerate(members):
        n = len(items)
        table.append(
            Bin(
                number / bins,
                (number + 1) / bins,
                n,
                sum(c for c, _ in items) / n if n else None,
                sum(1 for _, ok in items if ok) / n if n else None,
            )
        )
    return table


def expected_calibration_error(
    confidences: Sequence[float], correct: Sequence[bool], bins: int = 10
) -> float | None:
    """Sum over bins of (bin share of fields) x |accuracy - mean confidence|; None when empty."""
    table = reliability_table(confidences, correct, bins)
    total = sum(b.count for b in table)
    if not total:
        return None
    return sum(
        b.count / total * abs((b.accuracy or 0.0) - (b.mean_confidence or 0.0)) for b in table
    )


def auroc(confidences: Sequence[float], correct: Sequence[bool]) -> float | None:
    """Probability that a right field has higher confidence than a wrong one (ties count half);
    None unless both kinds are present."""
    _check(confidences, correct)
    right = [c for c, ok in zip(confidences, correct, strict=True) if ok]
    wrong = [c for c, ok in zip(confidences, correct, strict=True) if not ok]
    if not right or not wrong:
        return None
    ranked = sorted(confidences)
    # Average ranks (1-based) with ties shared: the Mann-Whitney U statistic.
    rank: dict[float, float] = {}
    at = 0
    while at < len(ranked):
        end = at
        while end < len(ranked) and ranked[end] == ranked[at]:
            end += 1
        rank[ranked[at]] = (at + 1 + end) / 2
        at = end
    u = sum(rank[c] for c in right) - len(right) * (len(right) + 1) / 2
    return u / (len(right) * len(wrong))


def coverage_at_precision(
    confidences: Sequence[float], correct: Sequence[bool], target: float = 0.99
) -> float:
    """The largest share of fields that can be accepted, most confident first, with precision
    (share right among accepted) at least `target`. Fields of equal confidence are accepted
    together (a threshold cannot split them). 0.0 when no threshold reaches it."""
    _check(confidences, correct)
    pairs = sorted(zip(confidences, correct, strict=True), key=lambda p: -p[0])
    best, accepted, right, at = 0, 0, 0, 0
    while at < len(pairs):
        end = at
        while end < len(pairs) and pairs[end][0] == pairs[at][0]:
            right += pairs[end][1]
            end += 1
        accepted = end
        if right / accepted >= target:
            best = accepted
        at = end
    return best / len(pairs) if pairs else 0.0
