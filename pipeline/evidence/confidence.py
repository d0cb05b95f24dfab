"""Per-field confidence in [0, 1], with its parts kept.

Parts (each in [0, 1]; a part that is unknown is omitted, never guessed):
- `tokens`: the probability of the value's own tokens, the ones whose characters overlap the
  value in the raw JSON the model wrote (not the key, quotes, colon or comma around it). We take
  the *minimum* token probability: a value is wrong when any one of its tokens is, so one
  doubtful digit among confident ones must show (a geometric mean would hide it), and unlike the
  joint probability it does not punish long texts for their length. With constrained decoding
  the log-probabilities are those *after* the grammar mask (renormalized over the tokens the
  grammar allows): that is the model's choice among admissible continuations; before the mask
  a field would be penalized for mass the model put on tokens the grammar forbade (a quote where
  a digit must come), which says nothing about whether the digit it wrote is right.
- `grounding`: exact 1.0, normalized 0.95, fuzzy 0.7, not_found 0.1 when the field must be
  grounded (else 0.5: free text may be paraphrased); unavailable is omitted.
- `agreement`: the share of alternative readings (overlapping tiles, the global view) that
  give the same value (amounts, dates and text compared normalized).
- `rules`: 0.5 when a failed business rule involves the field, else 1.0.

Combined as the product of the known parts (1.0 when none is known): each part is read as an
independent chance that the value survives that check, so any single doubt lowers the whole.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.evidence.grounding import FieldGrounding
from pipeline.evidence.normalize import as_amount, as_date, letters_digits
from pipeline.types import TokenLogprob

GROUNDING_SCORES = {"exact": 1.0, "normalized": 0.95, "fuzzy": 0.7}
NOT_FOUND_MUST = 0.1
NOT_FOUND_OTHER = 0.5
FAILED_RULE = 0.5


@dataclass(frozen=True)
class FieldConfidence:
    """One field's confidence: `value` in [0, 1] and the `parts` it was combined from."""

    path: str
    value: float
    parts: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "confidence": round(self.value, 4),
            **{k: round(v, 4) for k, v in self.parts.items()},
        }


class _Scanner:
    """Walks JSON text, recording each leaf's character span (string contents without quotes)."""

    def __init__(self, text: str) -> None:
        self.text, self.at = text, 0
        self.spans: dict[str, tuple[int, int]] = {}

    def skip(self) -> None:
        while self.at < len(self.text) and self.text[self.at] in " \t\r\n":
            self.at += 1

    def value(self, path: str) -> None:
        self.skip()
        char = self.text[self.at]
        if char == "{":
            self.obj(path)
        elif char == "[":
            self.array(path)
        elif char == '"':
            start = self.at + 1
            self.string()
            self.spans[path] = (start, self.at - 1)
        else:
            start = self.at
            while self.at < len(self.text) and self.text[self.at] not in ",]} \t\r\n":
                self.at += 1
            if start == self.at:
                raise ValueError(f"unexpected {char!r} at character {start}")
            self.spans[path] = (start, self.at)

    def string(self) -> str:
        start = self.at
        self.at += 1
        while self.text[self.at] != '"':
            self.at += 2 if self.text[self.at] == "\\" else 1
        self.at += 1
        return str(json.loads(self.text[start : self.at]))

    def obj(self, path: str) -> None:
        self.at += 1
        self.skip()
        while self.text[self.at] != "}":
            key = self.string()
            self.skip()
            self.at += 1  # the colon
            self.value(f"{path}.{key}" if path else key)
            self.skip()
            if self.text[self.at] == ",":
                self.at += 1
                self.skip()
        self.at += 1

    def array(self, path: str) -> None:
        self.at += 1
        self.skip()
        index = 0
        while self.text[self.at] != "]":
            self.value(f"{path}[{index}]")
            index += 1
            self.skip()
            if self.text[self.at] == ",":
                self.at += 1
                self.skip()
        self.at += 1


def value_spans(json_text: str) -> dict[str, tuple[int, int]]:
    """Path -> (start, end) character offsets of each leaf value in `json_text` (a string's
    contents without its quotes; a number, true, false or null as written). Paths as in
    `fields.leaves`: `seller.name`, `line_items[2].amount`. Raises ValueError for text that is
    not one JSON value (truncated output)."""
    scanner = _Scanner(json_text)
    try:
        scanner.value("")
    except IndexError:
        raise ValueError("the JSON text ends before its value does") from None
    return scanner.spans


def token_probabilities(json_text: str, tokens: Sequence[TokenLogprob]) -> dict[str, float]:
    """Path -> minimum probability of the tokens overlapping the value's characters. Values
    with no token of their own (an empty string) are left out; so is everything when the
    tokens do not spell `json_text` (a backend that trimmed it)."""
    joined = "".join(t.text for t in tokens)
    shift = joined.find(json_text)
    if shift < 0:
        return {}
    offsets, at = [], 0
    for token in tokens:
        offsets.append((at - shift, at - shift + len(token.text), token.logprob))
        at += len(token.text)
    out = {}
    for path, (start, end) in value_spans(json_text).items():
        own = [lp for s, e, lp in offsets if s < end and e > start]
        if own:
            out[path] = math.exp(min(own))
    return out


def grounding_score(grounding: FieldGrounding, must_be_grounded: bool) -> float | None:
    """The grounding part (see the module docstring); None when grounding was unavailable."""
    if grounding.kind == "unavailable":
        return None
    if grounding.kind == "not_found":
        return NOT_FOUND_MUST if must_be_grounded else NOT_FOUND_OTHER
    return GROUNDING_SCORES[grounding.kind]


def same_value(a: Any, b: Any) -> bool:
    """Equal as amounts, else as dates, else as letters and digits."""
    amount_a, amount_b = as_amount(a), as_amount(b)
    if amount_a is not None and amount_b is not None:
        return amount_a == amount_b
    date_a, date_b = as_date(a), as_date(b)
    if date_a is not None and date_b is not None:
        return date_a == date_b
    return letters_digits(str(a)) == letters_digits(str(b))


def agreement_score(value: Any, alternatives: Sequence[Any]) -> float | None:
    """Share of `alternatives` (other readings of the same field) equal to `value`; None when
    there are none."""
    if not alternatives:
        return None
    return sum(1 for alt in alternatives if same_value(value, alt)) / len(alternatives)


def combine(parts: Mapping[str, float | None]) -> tuple[float, dict[str, float]]:
    """Product of the known parts, and those parts."""
    known = {k: float(v) for k, v in parts.items() if v is not None}
    return math.prod(known.values()), known


def record_confidence(
    values: Mapping[str, Any],
    *,
    token_probs: Mapping[str, float] | None = None,
    groundings: Mapping[str, FieldGrounding] | None = None,
    must: Iterable[str] = (),
    alternatives: Mapping[str, Sequence[Any]] | None = None,
    rule_paths: Iterable[str] = (),
) -> dict[str, FieldConfidence]:
    """Confidence of each leaf in `values` (path -> value, e.g. `dict(fields.leaves(record))`).

    `token_probs` from `token_probabilities`, `groundings` from `ground_record`, `must` the
    paths that must be grounded, `alternatives` other readings per path, `rule_paths` the
    paths that a failed rule involves."""
    token_probs, groundings, alternatives = token_probs or {}, groundings or {}, alternatives or {}
    must_set, failed = set(must), set(rule_paths)
    out = {}
    for path, value in values.items():
        grounding = groundings.get(path)
        value_, parts = combine(
            {
                "tokens": token_probs.get(path),
                "grounding": grounding_score(grounding, path in must_set) if grounding else None,
                "agreement": agreement_score(value, alternatives.get(path, ())),
                "rules": FAILED_RULE if path in failed else 1.0,
            }
        )
        out[path] = FieldConfidence(path, value_, parts)
    return out
