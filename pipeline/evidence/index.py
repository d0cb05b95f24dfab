"""A document's words indexed once for grounding: amounts, dates and normalized text.

Candidate spans are runs of consecutive words in reading order (across line breaks), at most
`MAX_SPAN` words for amounts and dates (`1 234,56 EUR`, `02 Juillet 2015`). Text and identifiers
are searched in each page's letters-and-digits string, in two reading orders: line by line
across the page, and block by block (a column's lines in a row), so an address printed over
three lines beside another column is still one run.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from pipeline.evidence.normalize import amount_in, dates_in, fold
from pipeline.evidence.words import PageWords, Word
from pipeline.types import Box

MAX_SPAN = 4  # words in one printed amount or date
COLUMN_GAP = 2.5  # a horizontal gap wider than this many line heights splits a line in two


@dataclass(frozen=True)
class Span:
    """Words `start..end` (inclusive) of `order` (a reading order of page `page`)."""

    page: int
    words: tuple[Word, ...]

    @property
    def box(self) -> Box:
        return (
            min(w.box[0] for w in self.words),
            min(w.box[1] for w in self.words),
            max(w.box[2] for w in self.words),
            max(w.box[3] for w in self.words),
        )

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.words)


@dataclass
class Flat:
    """One reading order of a page as one letters-and-digits string: `chars[i]` came from
    `words[owner[i]]`; a match may start at `starts` and end at `ends` (word or sub-word
    boundaries: `IBAN:DE89` has one after the colon)."""

    page: int
    words: list[Word]
    chars: str = ""
    owner: list[int] = field(default_factory=list)
    starts: set[int] = field(default_factory=set)
    ends: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        parts: list[str] = []
        for index, word in enumerate(self.words):
            boundary = True
            for char in fold(word.text):
                if not char.isalnum():
                    if not boundary:
                        self.ends.add(len(self.owner))
                    boundary = True
                    continue
                if boundary:
                    self.starts.add(len(self.owner))
                    boundary = False
                parts.append(char)
                self.owner.append(index)
            if not boundary:
                self.ends.add(len(self.owner))
        self.chars = "".join(parts)

    def find(self, needle: str) -> list[Span]:
        """Every run of whole (sub-)words whose letters and digits are `needle`."""
        found, at = [], self.chars.find(needle)
        while at >= 0 and needle:
            end = at + len(needle)
            if at in self.starts and end in self.ends:
                words = self.words[self.owner[at] : self.owner[end - 1] + 1]
                found.append(Span(self.page, tuple(words)))
            at = self.chars.find(needle, at + 1)
        return found


@dataclass
class DocumentIndex:
    """Everything grounding looks up, built once per document from its pages' words."""

    pages: Sequence[PageWords]
    amounts: dict[Decimal, list[Span]] = field(default_factory=lambda: defaultdict(list))
    dates: dict[date, list[Span]] = field(default_factory=lambda: defaultdict(list))
    flats: list[Flat] = field(default_factory=list)
    _seen: set[tuple[int, tuple[Word, ...]]] = field(default_factory=set, repr=False)

    @classmethod
    def build(cls, pages: Sequence[PageWords]) -> DocumentIndex:
        """Index `pages` (unavailable pages contribute nothing)."""
        index = cls(pages)
        for page in pages:
            if page.unavailable or not page.words:
                continue
            lines = reading_order(page.words)
            blocks = block_order(page.words)
            index.flats += [Flat(page.page, lines), Flat(page.page, blocks)]
            for order in (lines, blocks):
                index._spans(page.page, order)
        return index

    @property
    def unavailable(self) -> list[int]:
        """Pages whose words could not be read."""
        return [p.page for p in self.pages if p.unavailable]

    def _spans(self, page: int, order: list[Word]) -> None:
        for start in range(len(order)):
            for size in range(1, MAX_SPAN + 1):
                words = tuple(order[start : start + size])
                if len(words) < size:
                    break
                if (page, words) in self._seen:
                    continue  # the same words in the other reading order
                self._seen.add((page, words))
                text = " ".join(w.text for w in words)
                amount = amount_in(text)
                if amount is not None:
                    self.amounts[amount].append(Span(page, words))
                for day in dates_in(text, whole=size > 1):
                    self.dates[day].append(Span(page, words))


def reading_order(words: Sequence[Word]) -> list[Word]:
    """Words line by line (their `line` ids), left to right."""
    return sorted(words, key=lambda w: (w.line, w.box[0]))


def block_order(words: Sequence[Word]) -> list[Word]:
    """Words column block by column block: each line is cut at wide gaps into segments; a
    segment continues the block whose last segment ends less than a line height above it and
    starts at about the same x; blocks follow in order of their first line."""
    by_line: dict[int, list[Word]] = defaultdict(list)
    for word in reading_order(words):
        by_line[word.line].append(word)
    blocks: list[list[Word]] = []
    tails: list[tuple[int, int, int]] = []  # per block: left, bottom, line height of its tail
    for line_words in by_line.values():
        height = max(1, sorted(w.box[3] - w.box[1] for w in line_words)[len(line_words) // 2])
        segments: list[list[Word]] = [[line_words[0]]]
        for word in line_words[1:]:
            if word.box[0] - segments[-1][-1].box[2] > COLUMN_GAP * height:
                segments.append([word])
            else:
                segments[-1].append(word)
        for segment in segments:
            left, top = segment[0].box[0], min(w.box[1] for w in segment)
            bottom = max(w.box[3] for w in segment)
            for number in range(len(blocks) - 1, -1, -1):
                tail_left, tail_bottom, tail_height = tails[number]
                gap = top - tail_bottom
                if -tail_height / 2 <= gap <= tail_height and abs(tail_left - left) <= height:
                    blocks[number] += segment
                    tails[number] = (tail_left, bottom, height)
                    break
            else:
                blocks.append(list(segment))
                tails.append((left, bottom, height))
    return [w for block in blocks for w in block]
