"""Vouch: every value of a merged record looked up in its document's own words, with a confidence.

The stage between extract and finalize. For one (document, schema):
1. each leaf of the merged record is traced back to the model answer that gave it (the tile's
   page and box: the grounding hint; the answer's own tokens: the token probability);
2. grounded in the pages' words (`pipeline.evidence.ground_record`: exact -> normalized ->
   fuzzy, preferring the page and tile it came from);
3. given one confidence from its parts (`record_confidence`): tokens, grounding, agreement of
   the other tiles that read the same field, and the business rules it takes part in;
4. turned into review reasons a clerk can act on: must-be-grounded values not printed on the
   document, and confidences below `grounding.min_confidence` for the schema.

`finalize` adds the reasons and decides the status once; `save` stores `fields` in the
`field_confidence` column and `pages` in the provenance (`grounding`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from pydantic import BaseModel

from pipeline.evidence import (
    DocumentIndex,
    FieldConfidence,
    FieldGrounding,
    confidence_reasons,
    ground_record,
    ground_value,
    grounding_reasons,
    kind_function,
    leaves,
    must_be_grounded,
    record_confidence,
    token_probabilities,
)
from pipeline.evidence.confidence import same_value
from pipeline.evidence.fields import KindOf, generic
from pipeline.extraction import Extracted, ModelCall
from pipeline.render.words import DocumentWords
from pipeline.settings import Settings
from pipeline.types import Box

_INDEX = re.compile(r"\[\d+\]")


@dataclass
class Vouched:
    """What vouching found for one record: per field path the stored evidence (`fields`, the
    `field_confidence` column), the review reasons, and the pages' words provenance."""

    fields: dict[str, dict[str, Any]] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    pages: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Reading:
    """One valid model answer: where it looked, its leaves and their token probabilities."""

    call: ModelCall
    values: dict[str, Any]
    token_probs: dict[str, float]

    @property
    def hint(self) -> tuple[int, Box | None]:
        return self.call.page, None if self.call.is_global else self.call.box


def vouch(extracted: Extracted, words: DocumentWords | None, settings: Settings) -> Vouched | None:
    """Ground and score every leaf of `extracted.record` in `words` (see the module docstring).
    None when there are no words at all (grounding is off). A record of None gives no fields;
    pages whose words could not be read make their values `unavailable`, never a failure."""
    if words is None:
        return None
    vouched = Vouched(pages=list(words.provenance))
    if extracted.record is None:
        return vouched
    schema = extracted.schema
    record = extracted.record.model_dump(mode="json")
    values = dict(leaves(record))
    readings = _readings(extracted.calls)
    sources = trace(values, readings)
    hints = {path: reading.hint for path, (reading, _) in sources.items()}
    index, kind_of = DocumentIndex.build(words.pages), kind_function(schema)
    groundings = ground_record(record, index, schema, kind_of, hints)
    groundings.update(align_items(values, groundings, index, kind_of))
    must = {p for p in groundings if _must(schema, generic(p))}
    confidences = record_confidence(
        values,
        token_probs={
            path: reading.token_probs[own]
            for path, (reading, own) in sources.items()
            if own in reading.token_probs
        },
        groundings=groundings,
        must=must,
        alternatives=_alternatives(values, sources, readings),
        rule_paths=extracted.record.rule_paths(),
    )
    threshold = settings.grounding.threshold(schema.schema_name)
    for path, value in values.items():
        grounding, confidence = groundings.get(path), confidences[path]
        reasons = grounding_reasons({path: value}, groundings, must.__contains__)
        if not reasons and threshold > 0:
            reasons = confidence_reasons({path: _without_rules(confidence)}, threshold)
        vouched.reasons += reasons
        vouched.fields[path] = evidence_entry(grounding, confidence, reasons)
    return vouched


def evidence_entry(
    grounding: FieldGrounding | None, confidence: FieldConfidence, reasons: Sequence[str]
) -> dict[str, Any]:
    """One field's stored evidence: the keys the review desk, `show` and the exports read.
    `match` is None for values never looked up on the page (booleans, enum choices)."""
    g = grounding
    return {
        "confidence": round(confidence.value, 4),
        "parts": {k: round(v, 4) for k, v in confidence.parts.items()},
        "page": g.page if g else None,
        "box": list(g.box) if g and g.box else None,
        "match": g.kind if g else None,
        "matched_text": g.matched_text if g else None,
        "occurrence": g.occurrence if g else None,
        "reasons": list(reasons),
    }


def _without_rules(confidence: FieldConfidence) -> FieldConfidence:
    """The confidence without its `rules` part: a failed rule has its own review reason; it
    lowers the stored confidence but does not add a second reason per field it involves."""
    rules = confidence.parts.get("rules", 1.0)
    parts = {k: v for k, v in confidence.parts.items() if k != "rules"}
    return FieldConfidence(confidence.path, confidence.value / rules if rules else 0.0, parts)


@cache
def _must(schema: type[BaseModel], generic_path: str) -> bool:
    return must_be_grounded(schema, generic_path)


def _readings(calls: Sequence[ModelCall]) -> list[Reading]:
    """The valid answers, tiles before global views, with their leaves and token probabilities
    (empty when the backend gave no log-probabilities or its text is not one JSON object)."""
    out = []
    for call in sorted(calls, key=lambda c: c.is_global):
        if call.problem is not None or call.stop_reason != "end":
            continue
        text = _json_object_text(call.text)
        try:
            values = dict(leaves(json.loads(text)))
        except ValueError:
            continue
        probs: dict[str, float] = {}
        if call.tokens:
            try:
                probs = token_probabilities(text, call.tokens)
            except ValueError:
                probs = {}
        out.append(Reading(call, values, probs))
    return out


def _json_object_text(text: str) -> str:
    start, end = text.find("{"), text.rfind("}")
    return text[start : end + 1] if 0 <= start < end else text


def item_prefix(path: str) -> str:
    """The list item a leaf belongs to: `line_items[2].amount` -> `line_items[2]`,
    `rows[3][1]` -> `rows[3]`, `series[0].points[1].value` -> `series[0].points[1]`; '' for a
    leaf outside lists (`total`) or a plain list's element (`column_headers[2]`)."""
    ends = [m.end() for m in _INDEX.finditer(path)]
    if ends and ends[-1] == len(path):
        ends.pop()  # a scalar list element: its item is the list item above it, if any
    return path[: ends[-1]] if ends else ""


def trace(values: dict[str, Any], readings: Sequence[Reading]) -> dict[str, tuple[Reading, str]]:
    """Merged path -> (the reading that gave the value, the path it has there).

    Outside lists: the first reading with the same value at the same path. In a list item: the
    reading's item (same list, any index: merging renumbers items across tiles and pages) that
    agrees with the merged item on most fields, then the same field in it. Values no reading
    gave the same way (normalization aside) are left out: they get no hint and no tokens.
    """
    out: dict[str, tuple[Reading, str]] = {}
    items: dict[str, dict[str, Any]] = {}
    for path, value in values.items():
        prefix = item_prefix(path)
        if not prefix:
            for reading in readings:
                if path in reading.values and same_value(value, reading.values[path]):
                    out[path] = (reading, path)
                    break
        else:
            items.setdefault(prefix, {})[path[len(prefix) :]] = value
    for prefix, fields in items.items():
        best = _best_item(prefix, fields, readings)
        if best is None:
            continue
        reading, own_prefix = best
        for suffix, value in fields.items():
            own = own_prefix + suffix
            if own in reading.values and same_value(value, reading.values[own]):
                out[prefix + suffix] = (reading, own)
    return out


def _best_item(
    prefix: str, fields: dict[str, Any], readings: Sequence[Reading]
) -> tuple[Reading, str] | None:
    wanted = generic(prefix)
    best: tuple[int, Reading, str] | None = None
    for reading in readings:
        candidates: dict[str, int] = {}
        for path, value in reading.values.items():
            own_prefix = item_prefix(path)
            if not own_prefix or generic(own_prefix) != wanted:
                continue
            suffix = path[len(own_prefix) :]
            agrees = suffix in fields and same_value(fields[suffix], value)
            candidates[own_prefix] = candidates.get(own_prefix, 0) + int(agrees)
        for own_prefix, score in candidates.items():
            if score and (best is None or score > best[0]):
                best = (score, reading, own_prefix)
    return None if best is None else (best[1], best[2])


def align_items(
    values: dict[str, Any],
    groundings: dict[str, FieldGrounding],
    index: DocumentIndex,
    kind_of: KindOf,
) -> dict[str, FieldGrounding]:
    """Groundings of list-item fields moved onto their item's own line.

    A line item's quantity `25` or `4` is printed in many places (other lines, an address);
    the tile hint cannot tell which. Each item's anchor is its field grounded by the longest
    matched text (usually the description); a field of the item grounded off the anchor's rows
    is grounded again, preferring the band of the page those rows span, and kept when it lands
    there. Returns the groundings that moved.
    """
    items: dict[str, list[str]] = {}
    for path in groundings:
        prefix = item_prefix(path)
        if prefix:
            items.setdefault(prefix, []).append(path)
    moved = {}
    for paths in items.values():
        found = [groundings[p] for p in paths if groundings[p].box is not None]
        if len(found) < 2:
            continue
        anchor = max(found, key=lambda g: len(g.matched_text or ""))
        assert anchor.box is not None and anchor.page is not None
        top, bottom = anchor.box[1], anchor.box[3]
        slack = (bottom - top) // 2
        band = (0, top - slack, 1 << 30, bottom + slack)
        for path in paths:
            grounding = groundings[path]
            if grounding is anchor or grounding.box is None or _within(grounding, band, anchor):
                continue
            again = ground_value(
                path, values[path], grounding.value_kind, index, (anchor.page, band)
            )
            if again.kind == grounding.kind and _within(again, band, anchor):
                moved[path] = again
    return moved


def _within(grounding: FieldGrounding, band: Box, anchor: FieldGrounding) -> bool:
    box = grounding.box
    if box is None or grounding.page != anchor.page:
        return False
    middle = (box[1] + box[3]) / 2
    return band[1] <= middle <= band[3]


def _alternatives(
    values: dict[str, Any],
    sources: dict[str, tuple[Reading, str]],
    readings: Sequence[Reading],
) -> dict[str, list[Any]]:
    """Other readings of each field outside lists: the non-null value other answers (other
    tiles, the global view) gave at the same path. List items are left out: tiles see
    different items, so their silence says nothing."""
    out: dict[str, list[Any]] = {}
    for path in values:
        if item_prefix(path) or _INDEX.search(path):
            continue
        source = sources.get(path)
        others = [
            r.values[path]
            for r in readings
            if path in r.values and (source is None or r is not source[0])
        ]
        if others:
            out[path] = others
    return out
