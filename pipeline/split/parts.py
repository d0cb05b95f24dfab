"""A file's split into documents: page ranges (`parts`), separator sheets, and the boundary
decisions behind them; from the boundaries (`split_at`) or from a person (`parse_parts`).

Every page of the file is in exactly one part or in `separators`: a page that could not be
rendered or read is still in a part (whose extraction then reports that page's error)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.split.boundaries import Boundary

Part = tuple[int, int]  # first and last page, 1-based, inclusive


@dataclass(frozen=True)
class Split:
    """`by`: "auto" (the signals and, where they did not decide, the model) or "person"."""

    page_count: int
    parts: tuple[Part, ...]
    separators: tuple[int, ...] = ()
    boundaries: tuple[Boundary, ...] = ()
    by: str = "auto"
    history: tuple[dict[str, Any], ...] = field(default=(), compare=False)

    @property
    def is_whole(self) -> bool:
        """One document of every page: the file itself, no child documents."""
        return self.parts == ((1, self.page_count),)

    def unsure(self, min_confidence: float) -> list[Boundary]:
        return [b for b in self.boundaries if b.confidence < min_confidence]

    def to_json(self) -> dict[str, Any]:
        return {
            "page_count": self.page_count,
            "parts": [list(p) for p in self.parts],
            "separators": list(self.separators),
            "boundaries": [b.to_json() for b in self.boundaries],
            "by": self.by,
            "history": list(self.history),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Split:
        return cls(
            int(data["page_count"]),
            tuple((int(a), int(b)) for a, b in data["parts"]),
            tuple(int(p) for p in data.get("separators", ())),
            tuple(Boundary.from_json(b) for b in data.get("boundaries", ())),
            str(data.get("by", "auto")),
            tuple(data.get("history", ())),
        )


def split_at(page_count: int, blank: set[int], boundaries: Sequence[Boundary]) -> Split:
    """The parts the boundaries make: each starting page opens a part that runs to the page
    before the next start; blank pages before the first part, after the last, and at the end
    of a part (before the next one starts) are separators (of a file that is one document,
    none: its blank pages stay its own); a blank page inside a part (a
    duplex back followed by a continuation) stays in it."""
    filled = [p for p in range(1, page_count + 1) if p not in blank]
    if not filled:
        return Split(page_count, ((1, page_count),), (), tuple(boundaries))
    starts = [filled[0], *(b.page for b in boundaries if b.starts)]
    if len(starts) == 1:  # one document: blank pages around it stay its own (the pages stage)
        return Split(page_count, ((1, page_count),), (), tuple(boundaries))
    ends = [_last_filled(filled, nxt - 1) for nxt in starts[1:]] + [filled[-1]]
    parts = tuple(zip(starts, ends, strict=True))
    inside = {p for first, last in parts for p in range(first, last + 1)}
    separators = tuple(p for p in range(1, page_count + 1) if p not in inside)
    return Split(page_count, parts, separators, tuple(boundaries))


def _last_filled(filled: list[int], at_most: int) -> int:
    return max(p for p in filled if p <= at_most)


def doubts(split: Split, part: Part, min_confidence: float) -> tuple[str, ...]:
    """Review reasons for the document of pages `part`: each unsure boundary at its first
    page, inside it, or right after its last page. A page nothing could be read on is no doubt
    of its own (nothing suggests a document starts there: it stays where it is, as before
    bundles were split)."""
    first, last = part
    reasons = []
    for b in split.unsure(min_confidence):
        if not first <= b.page <= last + 1 or b.by == "unreadable":
            continue
        if b.starts:
            where = "starts this document" if b.page == first else "starts the next document"
        else:
            where = "belongs to this document" if b.page <= last else "continues this document"
        reasons.append(
            f"page split unsure: page {b.page} {where}? (confidence {b.confidence:.2f}: "
            f"{b.why}); correct it with `docextract split`"
        )
    return tuple(reasons)


def person_split(page_count: int, text: str, who: str, where: str) -> Split:
    """The split a person gives as `1-2,3,4-7` (`parse_parts`; raises its ValueError), every
    boundary decided by them (`where`: the command or the desk)."""
    parts, separators = parse_parts(text, page_count)
    firsts = {first for first, _ in parts}
    boundaries = tuple(
        Boundary(page, page in firsts, 1.0, "person", f"set by {who} ({where})")
        for page in range(2, page_count + 1)
        if page not in separators
    )
    if parts == ((1, page_count),):
        separators = ()
    return Split(page_count, parts, separators, boundaries, by="person")


PART = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def parse_parts(text: str, page_count: int) -> tuple[tuple[Part, ...], tuple[int, ...]]:
    """`1-2,3,4-7` -> the parts and the pages left out (separators). Raises ValueError saying
    what is wrong: a page outside 1..page_count, parts out of order or overlapping."""
    parts: list[Part] = []
    for item in text.split(","):
        match = PART.match(item)
        if not match:
            raise ValueError(f"{item.strip()!r} is not a page or a page range (like 3 or 4-7)")
        first = int(match[1])
        last = int(match[2]) if match[2] else first
        if not 1 <= first <= last <= page_count:
            raise ValueError(
                f"{item.strip()!r}: pages run from 1 to {page_count}, first before last"
            )
        if parts and first <= parts[-1][1]:
            before = describe(parts[-1:])
            raise ValueError(f"{item.strip()!r} overlaps or comes before {before}")
        parts.append((first, last))
    if not parts:
        raise ValueError("no page range given")
    inside = {p for first, last in parts for p in range(first, last + 1)}
    return tuple(parts), tuple(p for p in range(1, page_count + 1) if p not in inside)


def describe(parts: Sequence[Part]) -> str:
    """(1, 2), (3, 3) -> `1-2,3`: what `parse_parts` reads back."""
    return ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in parts)
