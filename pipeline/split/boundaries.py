"""Where one document ends and the next begins, from the pages' signals, with a confidence.

Each page after the first page that holds anything gets a `Boundary`: does it start a new
document or continue the one before? Every signal found votes with a weight (how often it is
right on its own); the strongest vote on each side is compared, and the stronger side wins with
its weight lowered by how strongly the other side spoke. Blank pages never vote: a blank page
between two documents is a separator sheet (in no child document, listed apart), a blank page
inside a document (a duplex back) stays in it.

| signal | says | weight |
|---|---|---|
| `Page 1 of n` on the page | starts | 0.98 |
| `Page k of n` (k > 1) right after `Page k-1` | continues | 0.98 |
| `Page k of n` (k > 1) | continues | 0.90 |
| the page before was `Page n of n` | starts | 0.95 |
| `Continued on next page` before, `(continued)` here | continues | 0.95 |
| another document number than the document's | starts | 0.95 |
| the document's own number again | continues | 0.90 |
| a heading naming a document, under another letterhead | starts | 0.85 |
| a heading naming a document, same letterhead | starts | 0.75 |
| a new letterhead after a page that ends with a total | starts | 0.85 |
| a blank separator sheet before it | starts | 0.80 |
| none of the above on the page | continues | 0.80 |
| the page could not be read | continues | 0.55 |
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from pipeline.split.signals import PageSignals

LETTERHEAD_SAME = 0.3  # Jaccard similarity of top-band words at or above which it is one sender


@dataclass(frozen=True)
class Vote:
    starts: bool
    weight: float
    by: str
    why: str


@dataclass(frozen=True)
class Boundary:
    """The decision for one page: `starts` a new document or continues the one before, how
    sure (0.5-1), by which signal (`marker`, `number`, `continued`, `title`, `separator`,
    `nothing`, `unreadable`, `model`, `person`) and why, in words."""

    page: int
    starts: bool
    confidence: float
    by: str
    why: str

    def to_json(self) -> dict[str, Any]:
        return {
            "page": self.page,
            "starts": self.starts,
            "confidence": round(self.confidence, 3),
            "by": self.by,
            "why": self.why,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Boundary:
        return cls(
            int(data["page"]),
            bool(data["starts"]),
            float(data["confidence"]),
            str(data["by"]),
            str(data["why"]),
        )


def decide_boundaries(pages: Sequence[PageSignals]) -> list[Boundary]:
    """One Boundary per non-blank page after the first non-blank page, in page order."""
    boundaries: list[Boundary] = []
    first: PageSignals | None = None  # the current document's first page
    previous: PageSignals | None = None  # the last non-blank page
    number: str | None = None  # the current document's number, once seen
    separated = False  # blank pages since `previous`
    for page in pages:
        if page.blank:
            separated = previous is not None
            continue
        if previous is None or first is None:
            first, number = page, page.number
        else:
            boundary = _decide(page, previous, first, number, separated)
            boundaries.append(boundary)
            if boundary.starts:
                first, number = page, page.number
            else:
                number = number or page.number
        previous, separated = page, False
    return boundaries


def _decide(
    page: PageSignals,
    previous: PageSignals,
    first: PageSignals,
    number: str | None,
    separated: bool,
) -> Boundary:
    votes = _votes(page, previous, first, number, separated)
    starts = max((v for v in votes if v.starts), key=lambda v: v.weight, default=None)
    continues = max((v for v in votes if not v.starts), key=lambda v: v.weight, default=None)
    if starts is None or continues is None:
        winner = starts or continues
        assert winner is not None  # `_votes` always votes
        return Boundary(page.page, winner.starts, winner.weight, winner.by, winner.why)
    winner, loser = (starts, continues) if starts.weight > continues.weight else (continues, starts)
    confidence = max(0.5, winner.weight - 0.5 * (loser.weight - 0.5))
    why = f"{winner.why} (against: {loser.why})"
    return Boundary(page.page, winner.starts, confidence, winner.by, why)


def _votes(
    page: PageSignals,
    previous: PageSignals,
    first: PageSignals,
    number: str | None,
    separated: bool,
) -> list[Vote]:
    if not page.readable:
        return [Vote(False, 0.55, "unreadable", "its words could not be read")]
    votes: list[Vote] = []
    if page.marker is not None:
        at, total = page.marker
        printed = f"page {at}" + (f" of {total}" if total else "")
        if at == 1:
            votes.append(Vote(True, 0.98, "marker", f"'{printed}' printed on it"))
        elif previous.marker is not None and previous.marker[0] == at - 1:
            votes.append(Vote(False, 0.98, "marker", f"'{printed}' follows page {at - 1}"))
        else:
            votes.append(Vote(False, 0.90, "marker", f"'{printed}' printed on it"))
    if previous.marker is not None and previous.marker[0] == previous.marker[1]:
        last = f"{previous.marker[0]} of {previous.marker[1]}"
        votes.append(Vote(True, 0.95, "marker", f"the page before was the last ({last})"))
    if previous.continued or page.continues:
        where = "'continued' on the page before" if previous.continued else "'(continued)' on it"
        votes.append(Vote(False, 0.95, "continued", where))
    if page.number and number:
        if page.number != number:
            votes.append(
                Vote(
                    True,
                    0.95,
                    "number",
                    f"another number: {page.printed_number} (the document before: {number})",
                )
            )
        else:
            votes.append(Vote(False, 0.90, "number", f"the same number: {page.printed_number}"))
    if page.titled and page.title:
        if _similarity(page.letterhead, first.letterhead) < LETTERHEAD_SAME:
            why = f"heading '{page.title}' under a new letterhead"
            votes.append(Vote(True, 0.85, "title", why))
        else:
            votes.append(Vote(True, 0.75, "title", f"heading '{page.title}'"))
    new_sender = _similarity(page.letterhead, first.letterhead) < LETTERHEAD_SAME
    if previous.closes and new_sender and page.letterhead:
        why = "the page before ends with a total, and a new letterhead"
        votes.append(Vote(True, 0.85, "letterhead", why))
    if separated:
        votes.append(Vote(True, 0.80, "separator", "a blank sheet before it"))
    if not votes:
        votes.append(Vote(False, 0.80, "nothing", "nothing on it starts a document"))
    return votes


def _similarity(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def overrule(boundary: Boundary, starts: bool, confidence: float, by: str, why: str) -> Boundary:
    """The boundary as decided by another judge (the model, a person)."""
    return replace(boundary, starts=starts, confidence=confidence, by=by, why=why)
