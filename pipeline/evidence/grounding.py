"""Ground every leaf value of a record in its document's words: where is it printed?

Match order: exact (the words read the same, spacing aside) -> normalized (same amount, same
day, same letters and digits) -> fuzzy (text only: letters-and-digits similarity >=
`FUZZY_MIN`; never for amounts, dates, identifiers or currencies). Among several occurrences the
one on the hint page (where the value came from), nearest the hint box, wins. A value that is not
found while some page's words could not be read is `unavailable`, not `not_found`.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel

from pipeline.evidence.fields import Kind, KindOf, kind_function, leaves
from pipeline.evidence.index import DocumentIndex, Span
from pipeline.evidence.normalize import (
    as_amount,
    as_date,
    currency_marks,
    letters_digits,
    similarity,
    similarity_at_least,
)
from pipeline.types import Box

MatchKind = Literal["exact", "normalized", "fuzzy", "not_found", "unavailable"]
FUZZY_MIN = 0.85  # letters-and-digits similarity for a fuzzy text match
CLOSEST_MIN = 0.5  # an identifier's closest printed text must be at least this similar
MAX_FUZZY_CANDIDATES = 200  # word runs compared with one value, most bigrams shared first
Hint = tuple[int, Box | None]  # (1-based page, box in page pixels) the value came from


@dataclass(frozen=True)
class FieldGrounding:
    """Where one leaf value is printed. `box` is in page pixels, `page` 1-based, `occurrence`
    the 1-based index of the chosen match among all matches of its kind in document order;
    `closest` (printed text, page) is the nearest printed amount/date/identifier when the
    value is not found."""

    path: str
    value_kind: Kind
    kind: MatchKind
    page: int | None = None
    box: Box | None = None
    matched_text: str | None = None
    occurrence: int | None = None
    closest: tuple[str, int] | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def ground_record(
    record: Mapping[str, Any],
    index: DocumentIndex,
    schema_cls: type[BaseModel] | None = None,
    kind_of: KindOf | None = None,
    hints: Mapping[str, Hint] | None = None,
) -> dict[str, FieldGrounding]:
    """Ground every non-null leaf of `record` (`model_dump(mode="json")` form) in `index`.

    `kind_of(path, value)` overrides the schema's kinds (`fields.kind_function`); leaves of
    kind `skip` (booleans, enums) get no grounding. Returns path -> FieldGrounding.
    """
    kind_of = kind_of or kind_function(schema_cls)
    hints = hints or {}
    out = {}
    for path, value in leaves(record):
        kind = kind_of(path, value)
        if kind != "skip":
            out[path] = ground_value(path, value, kind, index, hints.get(path))
    return out


def ground_value(
    path: str, value: Any, kind: Kind, index: DocumentIndex, hint: Hint | None = None
) -> FieldGrounding:
    """Ground one value of a known kind (see `ground_record`)."""
    if not index.flats:
        return FieldGrounding(path, kind, "unavailable")
    if kind == "amount":
        found, closest = _amount(value, index)
    elif kind == "date":
        found, closest = _date(value, index)
    elif kind == "currency":
        found, closest = _currency(str(value), index), None
    else:
        found, closest = _text(str(value), kind, index)
    for match_kind, found_spans in found:
        spans = _minimal(found_spans)
        if spans:
            chosen = _prefer(spans, hint)
            return FieldGrounding(
                path,
                kind,
                match_kind,
                page=chosen.page,
                box=chosen.box,
                matched_text=chosen.text,
                occurrence=spans.index(chosen) + 1,
            )
    if index.unavailable:
        return FieldGrounding(path, kind, "unavailable")
    return FieldGrounding(path, kind, "not_found", closest=closest)


Found = list[tuple[MatchKind, list[Span]]]


def _amount(value: Any, index: DocumentIndex) -> tuple[Found, tuple[str, int] | None]:
    amount = as_amount(value)
    if amount is None:
        return _text(str(value), "text", index)
    spans = _ordered(index.amounts.get(amount, []))
    printed = str(value).strip()
    exact = [s for s in spans if s.text.strip() == printed]
    if spans:
        return [("exact", exact), ("normalized", spans)], None
    return [], _closest_amount(amount, index)


def _closest_amount(amount: Decimal, index: DocumentIndex) -> tuple[str, int] | None:
    """The printed amount whose digits are fewest edits away (then nearest in value)."""
    target = _digits(amount)
    best: tuple[int, Decimal, Span] | None = None
    for candidate, spans in index.amounts.items():
        if abs(candidate) < 1 and abs(amount) >= 10:
            continue
        key = (_edits(target, _digits(candidate)), abs(candidate - amount), spans[0])
        if best is None or key[:2] < best[:2]:
            best = key
    if best is None or best[0] > max(2, len(target) // 2):
        return None
    return best[2].text, best[2].page


def _digits(amount: Decimal) -> str:
    return format(abs(amount).quantize(Decimal("0.01")), "f").replace(".", "")


def _edits(a: str, b: str) -> int:
    return round((1 - similarity(a, b)) * max(len(a), len(b)))


def _date(value: Any, index: DocumentIndex) -> tuple[Found, tuple[str, int] | None]:
    day = as_date(value)
    if day is None:
        return _text(str(value), "text", index)
    spans = _ordered(index.dates.get(day, []))
    exact = [s for s in spans if s.text.strip() == str(value).strip()]
    if spans:
        return [("exact", exact), ("normalized", spans)], None
    nearest = min(index.dates, key=lambda d: abs((d - day).days), default=None)
    closest = None
    if nearest is not None and abs((nearest - day).days) <= 366:
        span = _ordered(index.dates[nearest])[0]
        closest = (span.text, span.page)
    return [], closest


def _currency(code: str, index: DocumentIndex) -> Found:
    spans = _text(code, "identifier", index)[0]
    marks = currency_marks(code)
    symbol = [
        Span(flat.page, (word,))
        for flat in index.flats[::2]
        for word in flat.words
        if any(mark in word.text for mark in marks)
    ]
    return [*spans, ("normalized", symbol)]


def _text(value: str, kind: Kind, index: DocumentIndex) -> tuple[Found, tuple[str, int] | None]:
    needle = letters_digits(value)
    if not needle:  # `#`, `-`: only the same characters will do
        same = [
            Span(flat.page, (w,))
            for flat in index.flats[::2]
            for w in flat.words
            if w.text == value.strip()
        ]
        return [("exact", _ordered(same))], None
    spans = _ordered(_unique(s for flat in index.flats for s in flat.find(needle)))
    printed = " ".join(value.split())
    exact = [s for s in spans if s.text == printed]
    if spans:
        return [("exact", exact), ("normalized", spans)], None
    best = _most_similar(needle, index, FUZZY_MIN if kind == "text" else CLOSEST_MIN)
    if kind == "text":
        fuzzy = [best[1]] if best and best[0] >= FUZZY_MIN else []
        return [("fuzzy", fuzzy)], None
    closest = (best[1].text, best[1].page) if best and best[0] >= CLOSEST_MIN else None
    return [], closest


def _most_similar(needle: str, index: DocumentIndex, floor: float) -> tuple[float, Span] | None:
    """The run of whole words most similar to `needle` (letters and digits), any page, if at
    least `floor` similar (None otherwise).

    Bounded, because a model can write a long made-up text that shares its bigrams with a dense
    page (every run of words then passes the bigram filter): runs of about the needle's length
    are ranked by how many of its bigrams they share, and only the best
    `MAX_FUZZY_CANDIDATES` are compared, each only while it can still beat the best so far
    (`similarity_at_least`, a banded edit distance).
    """
    low, high = int(0.7 * len(needle)), int(1.3 * len(needle)) + 1
    grams = {needle[i : i + 2] for i in range(len(needle) - 1)}
    candidates: list[tuple[int, int, int, int]] = []  # (-shared, flat, start, end)
    for number, flat in enumerate(index.flats):
        ends = sorted(flat.ends)
        chars = flat.chars
        # shared[p]: how many of chars[:p+1]'s bigrams are bigrams of the needle.
        shared = [0]
        for p in range(len(chars) - 1):
            shared.append(shared[-1] + (chars[p : p + 2] in grams))
        for at in sorted(flat.starts):
            for end in ends[bisect.bisect_left(ends, at + max(1, low)) :]:
                if end - at > high:
                    break
                count = shared[end - 1] - shared[at]
                if grams and count < 0.5 * len(grams):
                    continue  # cannot be FUZZY_MIN similar: most of its bigrams differ
                candidates.append((-count, number, at, end))
    best: tuple[float, Span] | None = None
    for _, number, at, end in heapq.nsmallest(MAX_FUZZY_CANDIDATES, candidates):
        flat = index.flats[number]
        score = similarity_at_least(needle, flat.chars[at:end], best[0] if best else floor)
        if score is not None and (best is None or score > best[0]):
            words = flat.words[flat.owner[at] : flat.owner[end - 1] + 1]
            best = (score, Span(flat.page, tuple(words)))
    return best


def _unique(spans: Any) -> list[Span]:
    seen: dict[tuple[int, Box], Span] = {}
    for span in spans:
        seen.setdefault((span.page, span.box), span)
    return list(seen.values())


def _ordered(spans: Sequence[Span]) -> list[Span]:
    """Document order: page, then top to bottom, left to right."""
    return sorted(spans, key=lambda s: (s.page, s.box[1], s.box[0]))


def _minimal(spans: Sequence[Span]) -> list[Span]:
    """The spans that hold no other span of the list (same page, a subset of its words), in
    the order given: `€3,076.30` rather than `on €3,076.30` or `Subtotal €3,076.30`, so that a
    box lands on the value itself and `occurrence` counts printings, not word runs."""
    by_size = sorted(spans, key=lambda s: len(s.words))
    kept: list[Span] = []
    for span in by_size:
        words = set(span.words)
        if not any(k.page == span.page and set(k.words) <= words for k in kept):
            kept.append(span)
    keep = {id(k) for k in kept}
    return [s for s in spans if id(s) in keep]


def _prefer(spans: Sequence[Span], hint: Hint | None) -> Span:
    if hint is None:
        return spans[0]
    page, box = hint

    def distance(span: Span) -> float:
        if box is None:
            return 0.0
        cx, cy = (span.box[0] + span.box[2]) / 2, (span.box[1] + span.box[3]) / 2
        inside = box[0] <= cx <= box[2] and box[1] <= cy <= box[3]
        return 0.0 if inside else abs(cx - (box[0] + box[2]) / 2) + abs(cy - (box[1] + box[3]) / 2)

    return min(spans, key=lambda s: (s.page != page, distance(s)))
