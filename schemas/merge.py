"""Merging partial records into one: tiles of a page (with their boxes), pages of a document.

Values are the plain Python of `model_dump(mode="python")`: dicts, lists and scalars.

`merge_pages(values)`, in the order given (pages of a document):
- scalars: the first non-null wins; nested objects merge key by key;
- lists are concatenated; an item repeated across the boundary of two consecutive partials (a
  table row repeated at the top of the next page) is kept once.

`merge_tiles(values, boxes)`, for the tiles of one page; `boxes` in page pixels:
- tiles are put in reading order: rows of tiles (boxes sharing most of their height) top to
  bottom, left to right within a row;
- scalars: the value most tiles agree on (a value cut short by a tile edge, a prefix of another,
  counts as that other); ties go to the first in reading order. A value seen in two overlapping
  tiles is therefore kept once;
- lists, side by side (one row of tiles): the two lists are aligned in order and items that do
  not contradict each other are joined into one, so the left and right halves of a table row
  become one row and a row both tiles saw whole is kept once;
- lists, one row of tiles under another: the lower list continues the upper one. Where the two
  rows' boxes overlap, the last items above and the first below that are the same item (no
  field contradicts, at least one equal) are joined and kept once: a line item split across the
  tile edge, or seen in both. Items repeated exactly across the boundary are kept once whatever
  the boxes (the page rule);
- a `None` box marks the page's global view (the whole page at low resolution): it only fills
  scalars the tiles left empty, and its list items count only when no tile found any.

Strings compare case- and space-insensitively; numbers and dates by value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

Box = tuple[int, int, int, int]  # (left, top, right, bottom) in page pixels
_MIN_PREFIX = 4


def is_empty(value: Any) -> bool:
    return value is None or value == "" or value == []


def merge_pages(values: Sequence[Any]) -> Any:
    """Merge partials in the order given (see the module docstring)."""
    present = [v for v in values if v not in (None, "")]
    if not present:
        return values[0] if values else None
    if all(isinstance(v, dict) for v in present):
        keys = list(dict.fromkeys(k for v in present for k in v))
        return {k: merge_pages([v.get(k) for v in present]) for k in keys}
    if all(isinstance(v, list) for v in present):
        merged: list[Any] = []
        for items in present:
            merged.extend(items[_longest_overlap(merged, items) :])
        return merged
    return present[0]


def _longest_overlap(head: list[Any], tail: list[Any]) -> int:
    """Length of the longest suffix of `head` that equals a prefix of `tail`."""
    for size in range(min(len(head), len(tail)), 0, -1):
        if head[-size:] == tail[:size]:
            return size
    return 0


def merge_tiles(values: Sequence[Any], boxes: Sequence[Box | None]) -> Any:
    """Merge the partials of one page's tiles, using their boxes (see the module docstring)."""
    if len(values) != len(boxes):
        raise ValueError(f"{len(values)} partials but {len(boxes)} boxes: give one box each")
    boxed = [(box, value) for box, value in zip(boxes, values, strict=True) if box is not None]
    overviews = [value for box, value in zip(boxes, values, strict=True) if box is None]
    if not boxed:
        return merge_pages(overviews)
    rows = reading_rows([box for box, _ in boxed])
    merged = _merge_rows(
        [[boxed[i][1] for i in row] for row in rows], [_union(boxed, r) for r in rows]
    )
    for overview in overviews:
        merged = fill_empty(merged, overview)
    return merged


def reading_rows(boxes: Sequence[Box]) -> list[list[int]]:
    """Indices of `boxes` grouped into rows (top to bottom), each row left to right. Two boxes
    are in one row when they share at least half the height of the shorter one."""
    rows: list[list[int]] = []
    for index in sorted(range(len(boxes)), key=lambda i: (boxes[i][1], boxes[i][0])):
        box = boxes[index]
        for row in rows:
            first = boxes[row[0]]
            shared = min(box[3], first[3]) - max(box[1], first[1])
            if shared >= 0.5 * min(box[3] - box[1], first[3] - first[1]):
                row.append(index)
                break
        else:
            rows.append([index])
    return [sorted(row, key=lambda i: boxes[i][0]) for row in rows]


def _union(boxed: list[tuple[Box, Any]], row: list[int]) -> Box:
    boxes = [boxed[i][0] for i in row]
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def _merge_rows(rows: list[list[Any]], row_boxes: list[Box]) -> Any:
    """Merge values arranged in rows of tiles (each row left to right) with their row boxes."""
    flat = [(value, r) for r, row in enumerate(rows) for value in row]
    present = [(v, r) for v, r in flat if v not in (None, "")]
    if not present:
        return flat[0][0] if flat else None
    if all(isinstance(v, dict) for v, _ in present):
        keys = list(dict.fromkeys(k for v, _ in present for k in v))
        return {
            key: _merge_rows([[v.get(key) for v in row if v] for row in rows], row_boxes)
            for key in keys
        }
    if all(isinstance(v, list) for v, _ in present):
        return _merge_lists(rows, row_boxes)
    return vote([v for v, _ in present])


def vote(values: Sequence[Any]) -> Any:
    """The value most of `values` agree on (a string prefix of another counts for it); ties go
    to the earliest."""
    counts: list[list[Any]] = []  # [representative, count]
    for value in values:
        for entry in counts:
            if same_value(entry[0], value):
                entry[1] += 1
                entry[0] = longer(entry[0], value)
                break
        else:
            counts.append([value, 1])
    return max(counts, key=lambda entry: entry[1])[0]


def _merge_lists(rows: list[list[Any]], row_boxes: list[Box]) -> list[Any]:
    merged: list[Any] = []
    previous: Box | None = None
    for row, box in zip(rows, row_boxes, strict=True):
        items: list[Any] = []
        for value in row:
            items = align_join(items, value or [])
        if previous is None or not items:
            merged += items
        else:
            merged = join_boundary(merged, items, _overlap_items(previous, box, len(merged)))
        previous = box if items else previous
    return merged


def _overlap_items(upper: Box, lower: Box, count: int) -> int:
    """How many of the upper row's last items could lie in the band it shares with the lower
    row (items spread over the row's height, plus one cut at the edge)."""
    shared = upper[3] - lower[1]
    if shared <= 0:
        return 0
    return math.ceil(count * shared / max(1, upper[3] - upper[1])) + 1


def align_join(left: list[Any], right: list[Any]) -> list[Any]:
    """Two lists of the same rows (tiles side by side), aligned in order; items that do not
    contradict each other are joined, the rest kept in order."""
    n, m = len(left), len(right)
    score = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            gain = _pair_score(left[i], right[j])
            pair = score[i + 1][j + 1] + gain if gain else -1
            score[i][j] = max(pair, score[i + 1][j], score[i][j + 1])
    out, i, j = [], 0, 0
    while i < n and j < m:
        gain = _pair_score(left[i], right[j])
        if gain and score[i][j] == score[i + 1][j + 1] + gain:
            out.append(join_items(left[i], right[j]))
            i, j = i + 1, j + 1
        elif score[i][j] == score[i + 1][j]:
            out.append(left[i])
            i += 1
        else:
            out.append(right[j])
            j += 1
    return out + left[i:] + right[j:]


def _pair_score(a: Any, b: Any) -> int:
    """2: the same item (no contradiction, something equal); 1: halves that fit; 0: different."""
    if not compatible(a, b):
        return 0
    return 2 if shares_value(a, b) else 1


def join_boundary(head: list[Any], tail: list[Any], limit: int) -> list[Any]:
    """`head + tail`, where items ending `head` that are the same items as those starting
    `tail` are kept once: up to `limit` (the rows' overlap) joined where they do not
    contradict each other, and any number where they are exactly equal (as between pages)."""
    exact = _longest_overlap(head, tail)
    for size in range(min(limit, len(head), len(tail)), exact, -1):
        pairs = list(zip(head[-size:], tail[:size], strict=True))
        if all(compatible(a, b) and shares_value(a, b) for a, b in pairs):
            return head[:-size] + [join_items(a, b) for a, b in pairs] + tail[size:]
    return head + tail[exact:]


def compatible(a: Any, b: Any) -> bool:
    """No field of `a` contradicts `b` (empty fields contradict nothing)."""
    if is_empty(a) or is_empty(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return all(compatible(a.get(k), b.get(k)) for k in a.keys() | b.keys())
    return same_value(a, b)


def shares_value(a: Any, b: Any) -> bool:
    """At least one non-empty field of `a` equals that of `b`."""
    if isinstance(a, dict) and isinstance(b, dict):
        return any(shares_value(a.get(k), b.get(k)) for k in a.keys() & b.keys())
    return not is_empty(a) and not is_empty(b) and same_value(a, b)


def same_value(a: Any, b: Any) -> bool:
    """Equal (strings ignoring case and spacing), or a string of at least `_MIN_PREFIX`
    characters that starts the other: the same value cut short by a tile edge."""
    if isinstance(a, str) and isinstance(b, str):
        x, y = sorted((_norm(a), _norm(b)), key=len)
        return x == y or (len(x) >= _MIN_PREFIX and y.startswith(x))
    return bool(a == b)


def longer(a: Any, b: Any) -> Any:
    """Of two same values, the fuller one (the longer string)."""
    if isinstance(a, str) and isinstance(b, str) and len(_norm(b)) > len(_norm(a)):
        return b
    return a


def join_items(a: Any, b: Any) -> Any:
    """One item from two compatible ones: every field from whichever has it (the fuller one)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return {k: join_items(a.get(k), b.get(k)) for k in dict.fromkeys([*a, *b])}
    if is_empty(a):
        return b
    return a if is_empty(b) else longer(a, b)


def fill_empty(value: Any, overview: Any) -> Any:
    """`value` with its empty fields (and empty lists) taken from `overview`."""
    if isinstance(value, dict) and isinstance(overview, dict):
        return {
            k: fill_empty(value.get(k), overview.get(k)) for k in dict.fromkeys([*value, *overview])
        }
    return overview if is_empty(value) else value


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()
