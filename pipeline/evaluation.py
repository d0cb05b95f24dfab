"""Extraction quality against ground truth: per schema and per field.

Fields are walked along the schema's grammar (its strict JSON Schema), so built-in and custom
schemas are scored alike:
- a scalar (number, date, code, enum) scores exact match after normalization; a free-text string
  (no pattern, no enum) also scores ANLS. A field counts in a document only when the truth or the
  prediction has a value (both null is no evidence either way);
- a list of objects (line items, form fields, series) is matched item to item (greedy, most
  similar pair first) and scores precision/recall/F1 of items equal in every field (a nested
  list, like a series' points, must be perfect too); each sub-field (`line_items[].amount`,
  `series[].points`) is scored over the truth's items as well;
- a list of lists (table rows) scores precision/recall/F1 of non-empty cells, rows matched first;
- a list of strings (column headers, notes) scores precision/recall/F1 as a multiset.
Each extraction's status counts too: the share of documents needing review, or failed.

Partly labelled truth (issue 18): a truth file may say which paths were labelled,
`"labelled": {"invoice": ["total", "seller.name", "line_items"]}` (a list path: its items were
labelled). Then only those paths are scored, in every metric and in the calibration figures
(`pipeline.calibration`); a labelled path whose truth is null means "absent from the document"
and is scored as usual. Without the key, every path is labelled.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from pipeline.groundtruth import GroundTruth, covers, load_ground_truth
from schemas.base import ExtractionSchema
from schemas.types import parse_amount

ANLS_THRESHOLD = 0.5  # below this similarity a text scores 0 (ANLS, Biten et al., ICCV 2019)
_NUMERIC = re.compile(r"[\s\d.,'()+\-−€$£¥%]*\d[\s\d.,'()+\-−€$£¥%]*")


@dataclass(frozen=True)
class Case:
    """One (document, schema): the truth, the stored prediction (None: no record), its status,
    the paths labelled (None: all) and the stored per-field evidence (`field_confidence`)."""

    document: str
    schema: type[ExtractionSchema]
    truth: dict[str, Any]
    predicted: dict[str, Any] | None
    status: str
    labelled: tuple[str, ...] | None = None
    evidence: dict[str, Any] | None = None


@dataclass
class FieldScore:
    """Running totals of one field. kind: value, text (scored per value), items, cells,
    strings (scored as lists), rows (whole table rows, reported beside the cells)."""

    kind: str
    count: int = 0  # value/text: documents (or items) scored
    hits: int = 0
    anls_sum: float = 0.0
    matched: int = 0  # items/cells/strings: true positives
    predicted: int = 0
    expected: int = 0

    @property
    def exact(self) -> float | None:
        return self.hits / self.count if self.count else None

    @property
    def anls(self) -> float | None:
        return self.anls_sum / self.count if self.count and self.kind == "text" else None

    @property
    def precision(self) -> float | None:
        return self.matched / self.predicted if self.predicted else None

    @property
    def recall(self) -> float | None:
        return self.matched / self.expected if self.expected else None

    @property
    def f1(self) -> float | None:
        total = self.predicted + self.expected
        return 2 * self.matched / total if total else None

    def to_json(self) -> dict[str, Any]:
        if self.kind in ("value", "text"):
            data: dict[str, Any] = {"kind": self.kind, "n": self.count, "exact": _r(self.exact)}
            if self.kind == "text":
                data["anls"] = _r(self.anls)
            return data
        return {
            "kind": self.kind,
            "expected": self.expected,
            "predicted": self.predicted,
            "matched": self.matched,
            "precision": _r(self.precision),
            "recall": _r(self.recall),
            "f1": _r(self.f1),
        }


Scores = dict[str, FieldScore]


@dataclass
class SchemaReport:
    """The scores of one schema over the documents evaluated: statuses, per field, per document."""

    schema: str
    version: str
    statuses: Counter[str] = field(default_factory=Counter)
    fields: Scores = field(default_factory=dict)
    documents: list[dict[str, Any]] = field(default_factory=list)
    calibration: dict[str, Any] | None = None  # set by pipeline.calibration.add_calibration

    def summary(self) -> dict[str, Any]:
        """Documents, statuses, review/failed shares; `exact` is the mean of the scalar
        fields' exact match, `f1` the micro F1 over every list's items, cells and strings."""
        n = sum(self.statuses.values())
        scalars = [s for s in self.fields.values() if s.kind in ("value", "text")]
        lists = [s for s in self.fields.values() if s.kind in ("items", "cells", "strings")]
        return {
            "documents": n,
            "status": dict(sorted(self.statuses.items())),
            "needs_review_share": _r(self.statuses["needs_review"] / n) if n else None,
            "failed_share": _r(self.statuses["failed"] / n) if n else None,
            # Macro over fields: 30 line items must not outweigh the invoice number.
            "exact": _ratio(sum(s.exact or 0.0 for s in scalars), len(scalars)),
            "f1": _ratio(
                2 * sum(s.matched for s in lists), sum(s.predicted + s.expected for s in lists)
            ),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            **self.summary(),
            "fields": {name: score.to_json() for name, score in self.fields.items()},
            **({"calibration": self.calibration} if self.calibration is not None else {}),
            "per_document": self.documents,
        }


def evaluate(cases: Iterable[Case]) -> dict[str, SchemaReport]:
    """Score every case; one report per schema name, in the order schemas first appear."""
    reports: dict[str, SchemaReport] = {}
    for case in cases:
        name = case.schema.schema_name
        report = reports.setdefault(name, SchemaReport(name, case.schema.schema_version))
        report.statuses[case.status] += 1
        scores = score_record(case.schema, case.truth, case.predicted, case.labelled)
        for path, score in scores.items():
            _add(report.fields.setdefault(path, FieldScore(score.kind)), score)
        one = SchemaReport(name, report.version, Counter({case.status: 1}), scores).summary()
        report.documents.append(
            {
                "document": case.document,
                "status": case.status,
                "exact": one["exact"],
                "f1": one["f1"],
            }
        )
    return reports


def score_record(
    schema: type[ExtractionSchema],
    truth: dict[str, Any],
    predicted: dict[str, Any] | None,
    labelled: Iterable[str] | None = None,
) -> Scores:
    """The field scores of one predicted record (None: no record) against its truth; only the
    `labelled` paths count (None: all)."""
    walker = _Walker(schema.grammar_schema(), None if labelled is None else tuple(labelled))
    walker.compare(walker.root, truth, predicted or {}, "")
    return walker.out


class _Walker:
    """Walks truth and prediction together along a JSON Schema, adding up scores in `out`."""

    def __init__(self, root: dict[str, Any], labelled: tuple[str, ...] | None = None) -> None:
        self.root = root
        self.labelled = labelled
        self.out: Scores = {}

    def score(self, path: str, kind: str) -> FieldScore:
        return self.out.setdefault(path, FieldScore(kind))

    def compare(self, spec: dict[str, Any], truth: Any, predicted: Any, path: str) -> None:
        spec = _resolve(self.root, spec)
        if spec.get("type") == "object":
            for key, sub in spec.get("properties", {}).items():
                where = f"{path}.{key}" if path else key
                self.compare(sub, (truth or {}).get(key), (predicted or {}).get(key), where)
        elif not covers(self.labelled, path):
            return  # nobody labelled it: neither right nor wrong
        elif spec.get("type") == "array":
            items = _resolve(self.root, spec.get("items", {}))
            kind = items.get("type")
            scorer = self.items if kind == "object" else self.cells if kind == "array" else None
            (scorer or self.strings)(items, truth or [], predicted or [], path)
        elif truth is not None or predicted is not None:
            score = self.score(path, "text" if is_free_text(spec) else "value")
            score.count += 1
            score.hits += int(normalize(truth) == normalize(predicted))
            score.anls_sum += anls(truth, predicted) if score.kind == "text" else 0.0

    def similarity(self, spec: dict[str, Any], truth: Any, predicted: Any) -> float:
        """Agreement of two items: the mean over their own fields of 0/1 (value), ANLS (text)
        and F1 (a nested list, e.g. a series' points); exactly 1.0 only when every field is
        equal and every nested list perfect. Two empty items are equal."""
        walker = _Walker(self.root)
        walker.compare(spec, truth, predicted, "")
        parts = []
        for path, score in walker.out.items():
            if "[]" in path or score.kind == "rows":
                continue  # a nested list's own fields are in its F1 already
            if score.kind == "value" and score.count:
                parts.append(score.hits / score.count)
            elif score.kind == "text" and score.count:
                parts.append(score.anls_sum / score.count)
            elif score.kind in ("items", "cells", "strings"):
                parts.append(1.0 if score.f1 is None else score.f1)
        if all(part == 1.0 for part in parts):
            return 1.0
        return min(sum(parts) / len(parts), 0.999)

    def items(
        self, spec: dict[str, Any], truth: list[Any], predicted: list[Any], path: str
    ) -> None:
        pairs = greedy_match(truth, predicted, lambda t, p: self.similarity(spec, t, p))
        score = self.score(path, "items")
        score.expected += len(truth)
        score.predicted += len(predicted)
        score.matched += sum(self.similarity(spec, truth[i], predicted[j]) == 1 for i, j in pairs)
        partner = dict(pairs)
        for i, item in enumerate(truth):  # sub-fields: over the truth's items
            self.compare(spec, item, predicted[partner[i]] if i in partner else {}, path + "[]")
        for j in sorted(set(range(len(predicted))) - set(partner.values())):
            walker = _Walker(self.root)  # an unmatched prediction: only its nested lists count
            walker.compare(spec, None, predicted[j], path + "[]")
            for name, part in walker.out.items():
                if part.kind not in ("value", "text"):
                    _add(self.score(name, part.kind), part)

    def cells(
        self, spec: dict[str, Any], truth: list[Any], predicted: list[Any], path: str
    ) -> None:
        def equal(t: list[Any], p: list[Any]) -> int:
            pairs = zip(t, p, strict=False)  # a short row simply misses its last cells
            return sum(a is not None and normalize(a) == normalize(b) for a, b in pairs)

        pairs = greedy_match(truth, predicted, lambda t, p: equal(t, p) / max(len(t), len(p), 1))
        score, rows = self.score(path, "cells"), self.score(path + " (whole rows)", "rows")
        score.expected += sum(cell is not None for row in truth for cell in row)
        score.predicted += sum(cell is not None for row in predicted for cell in row)
        score.matched += sum(equal(truth[i], predicted[j]) for i, j in pairs)
        rows.expected += len(truth)
        rows.predicted += len(predicted)
        rows.matched += sum(
            list(map(normalize, truth[i])) == list(map(normalize, predicted[j])) for i, j in pairs
        )

    def strings(
        self, spec: dict[str, Any], truth: list[Any], predicted: list[Any], path: str
    ) -> None:
        score = self.score(path, "strings")
        score.expected += len(truth)
        score.predicted += len(predicted)
        score.matched += sum((Counter(map(_key, truth)) & Counter(map(_key, predicted))).values())


def greedy_match(
    truth: Sequence[Any], predicted: Sequence[Any], similarity: Callable[[Any, Any], float]
) -> list[tuple[int, int]]:
    """Pairs (truth index, predicted index), most similar first, each item used once; pairs
    with no similarity at all stay unmatched. Ties go to the pair earliest in both lists."""
    candidates = sorted(
        ((similarity(t, p), i, j) for i, t in enumerate(truth) for j, p in enumerate(predicted)),
        key=lambda c: (-c[0], c[1], c[2]),
    )
    used_t: set[int] = set()
    used_p: set[int] = set()
    pairs = []
    for value, i, j in candidates:
        if value > 0 and i not in used_t and j not in used_p:
            pairs.append((i, j))
            used_t.add(i)
            used_p.add(j)
    return sorted(pairs)


def normalize(value: Any) -> Any:
    """What 'equal' means: numbers by value (`1.234,50` = `1234.5`), text case- and
    space-insensitive (NFKC, casefolded, spaces collapsed, outer punctuation dropped)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float | Decimal):
        return Decimal(str(value)).normalize()
    text = " ".join(unicodedata.normalize("NFKC", str(value)).split()).casefold()
    text = text.strip(" .,;:")
    if _NUMERIC.fullmatch(text):
        try:
            amount = parse_amount(text.rstrip("%").strip())
        except ValueError:
            return text
        return None if amount is None else amount.normalize()
    return text


def anls(truth: Any, predicted: Any) -> float:
    """Normalized Levenshtein similarity, 0 below ANLS_THRESHOLD; 1.0 for two empties."""
    a, b = _key(truth), _key(predicted)
    if not a and not b:
        return 1.0
    similarity = 1 - levenshtein(a, b) / max(len(a), len(b))
    return similarity if similarity >= ANLS_THRESHOLD else 0.0


def levenshtein(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b))
            )
        previous = current
    return previous[-1]


def is_free_text(spec: dict[str, Any]) -> bool:
    return spec.get("type") == "string" and not (
        {"pattern", "enum", "const", "format"} & spec.keys()
    )


def _resolve(root: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """Follow `$ref` into `$defs` and unwrap `X | null`."""
    while True:
        if "$ref" in spec:
            spec = root.get("$defs", {})[spec["$ref"].rsplit("/", 1)[-1]]
        elif "anyOf" in spec:
            options = [o for o in spec["anyOf"] if o.get("type") != "null"]
            spec = options[0] if len(options) == 1 else {"type": "string"}
        else:
            return spec


def _add(total: FieldScore, part: FieldScore) -> None:
    total.count += part.count
    total.hits += part.hits
    total.anls_sum += part.anls_sum
    total.matched += part.matched
    total.predicted += part.predicted
    total.expected += part.expected


def _key(value: Any) -> str:
    return "" if value is None else str(normalize(value))


def _ratio(part: float, whole: float) -> float | None:
    return _r(part / whole) if whole else None


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


# Ground truth is read in `pipeline.groundtruth`; these names are part of eval's surface.
__all__ = ["Case", "GroundTruth", "SchemaReport", "covers", "evaluate", "load_ground_truth"]
