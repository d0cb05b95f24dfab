"""Wrong versions of true values, the way a model gets values wrong: one digit changed, two
digits swapped, a value taken from another document, a made-up amount, a shifted date.

Used to measure whether grounding catches wrong values (`bench/grounding.py`) and by the
`scripted-truth` backend (`--perturb`) to run the whole pipeline on known mistakes.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Literal

from pipeline.evidence.normalize import as_amount, as_date, letters_digits

Perturbation = Literal["digit", "swap", "foreign", "made-up", "date"]
PERTURBATIONS: tuple[Perturbation, ...] = ("digit", "swap", "foreign", "made-up", "date")


def perturbations(
    value: Any, kind: str, foreign: Sequence[Any], rng: random.Random
) -> dict[str, Any]:
    """Wrong versions of `value` (of grounding kind `kind`) by perturbation name, only those
    that apply and differ. A date only shifts (digit edits of an ISO date are date shifts
    too); `foreign` holds the same field's values in other documents."""
    out: dict[str, Any] = {}
    text = str(value)
    digits = [i for i, c in enumerate(text) if c.isdigit()]
    if kind == "date" and as_date(value):
        day = as_date(value)
        assert day is not None
        out["date"] = (day + timedelta(days=rng.choice([-1, 1]) * rng.randint(1, 30))).isoformat()
        return out
    if digits:
        i = rng.choice(digits)
        out["digit"] = (
            text[:i] + rng.choice([d for d in "0123456789" if d != text[i]]) + text[i + 1 :]
        )
    pairs = [(a, b) for a, b in itertools.pairwise(digits) if text[a] != text[b]]
    if pairs:
        a, b = rng.choice(pairs)
        out["swap"] = text[:a] + text[b] + text[a + 1 : b] + text[a] + text[b + 1 :]
    others = [f for f in foreign if letters_digits(str(f)) != letters_digits(text)]
    if others:
        out["foreign"] = rng.choice(others)
    amount = as_amount(value) if kind == "amount" else None
    if amount is not None:
        out["made-up"] = f"{float(abs(amount)) * rng.uniform(0.5, 1.5) + 1:.2f}"
    return out
