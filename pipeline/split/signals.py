"""What a page's own words say about where it sits in a document, as plain facts per page.

Read from the page's words (text layer or OCR, `PageWords`), never from a model:

- `marker`: a printed page number, `Page 2 of 3`, `Seite 1 von 2`, `2/3` alone in the header or
  footer band, `- 2 -` -> (2, 3), (1, 2), (2, 3), (2, None);
- `number`: the document's number as printed after its label (`Invoice no. AL-25-03391`,
  `Rechnungsnummer: 2024/58`), normalized as the duplicate check does (`al2503391`);
- `title`: the page's heading, the largest line in its top 40% when clearly larger than the
  text around it (`INVOICE`, `Expense claim`); `titled` when it names a kind of document;
- `continues` / `continued`: `(continued)` in the header band (this page continues the one
  before) / `Continued on next page` in the footer band (the next page continues this one);
- `closes`: a total, an amount due or a closing greeting in the lower 60% of the page (not a
  subtotal or an amount carried forward): a document may end on this page;
- `letterhead`: the words of the top band (else of the first lines), to tell a new sender from
  the same one.
"""

from __future__ import annotations

import re
import statistics
import unicodedata
from dataclasses import dataclass

from pipeline.duplicates.keys import normalize_number
from pipeline.evidence.words import PageWords, Word

TOP_BAND = 0.15  # share of the page height where letterheads and running headers sit
FOOTER_BAND = 0.12
TITLE_BAND = 0.40
TITLE_MIN_SIZE = 1.4  # a heading's height against the page's median line height
TITLE_MAX_WORDS = 6

_OF = r"(?:of|/|von|sur|de|di|aus|van|av)"
_PAGE = r"(?:page|pages|seite|pagina|página|blatt|sida|side|strona|p\.|pg\.?)"
MARKER = re.compile(rf"\b{_PAGE}\s*(\d{{1,3}})\s*{_OF}\s*(\d{{1,3}})\b")
MARKER_NO_TOTAL = re.compile(rf"\b{_PAGE}\s*(\d{{1,3}})\b(?!\s*{_OF})")
BARE_MARKER = re.compile(r"^\s*(?:(\d{1,3})\s*/\s*(\d{1,3})|-\s*(\d{1,3})\s*-)\s*$")

_DOCUMENT = (
    r"(?:invoice|tax invoice|rechnung|rechnungs|facture|factura|fattura|faktura|receipt|"
    r"credit note|gutschrift|avoir|order|bestellung|statement|quote|quotation|angebot|"
    r"delivery note|lieferschein|bill|document)"
)
_NUMBER_WORD = r"(?:no\.?|nr\.?|number|nummer|num(?:ero|éro)?\.?|n[°º]\.?|#|id)"
_VALUE = r"\s*[:.]?\s*(?P<value>[a-z0-9][\w\-/.]*)"
NUMBER = re.compile(  # "invoice no. X", "rechnungsnummer X", "n° de facture X"
    rf"\b(?:{_DOCUMENT}\s*-?\s*{_NUMBER_WORD}|{_NUMBER_WORD}\s*(?:de|du|der|of)?\s*{_DOCUMENT})"
    + _VALUE
)
TITLE_WORDS = re.compile(
    rf"\b(?:{_DOCUMENT}|form|claim|application|registration|price list|report|contract|"
    r"letter|notice|reminder|mahnung|rappel)s?\b"
)
CLOSING_AMOUNT = re.compile(  # with an amount on the same line
    r"\b(?:grand total|total amount|amount due|balance due|total due|total|gesamtbetrag|"
    r"rechnungsbetrag|endbetrag|zahlbetrag|(?:end|gesamt|rechnungs)?summe|zu zahlen|net a payer|"
    r"total ttc|change|cash received)\b"
)
CLOSING_WORDS = re.compile(r"\b(?:thank you|vielen dank|merci)\b")
NOT_CLOSING = re.compile(
    r"sub ?total|carried forward|brought forward|ubertrag|zwischensumme|report total"
)
LETTERHEAD_ROWS = 4  # where no words sit in the top band (a photo's margin): the first lines
CONTINUED_HERE = re.compile(r"\((?:continued|cont'?d\.?|suite|fortsetzung|forts\.)\)|\bcontinued\b")
CONTINUED_NEXT = re.compile(
    r"continued on (?:the )?next page|continued overleaf|suite (?:page suivante|au verso)|"
    r"fortsetzung (?:auf )?(?:der )?n[aä]chste|\bp\.t\.o\b|please turn over|b\.w\.|"
    r"bitte wenden"
)


@dataclass(frozen=True)
class PageSignals:
    """What one page's words say (see the module's docstring). `readable`: words were read."""

    page: int
    blank: bool = False
    readable: bool = True
    marker: tuple[int, int | None] | None = None
    number: str | None = None
    printed_number: str | None = None
    title: str | None = None
    titled: bool = False
    continues: bool = False
    continued: bool = False
    closes: bool = False
    letterhead: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Row:
    """Words whose vertical centres line up, left to right, as one line of text."""

    text: str
    top: int
    bottom: int
    words: int

    @property
    def height(self) -> int:
        return self.bottom - self.top


def read_signals(words: PageWords, blank: bool = False) -> PageSignals:
    """The signals of one page from its words; an unreadable page has none (`readable`
    False), a blank one is only `blank`."""
    if blank:
        return PageSignals(words.page, blank=True)
    if words.unavailable or not words.words:
        return PageSignals(words.page, readable=False)
    rows = rows_of(words.words)
    height = max(words.height, 1)
    top = [r for r in rows if r.bottom <= height * TOP_BAND]
    foot = [r for r in rows if r.top >= height * (1 - FOOTER_BAND)]
    number = _number(rows)
    title = _title(rows, height)
    return PageSignals(
        words.page,
        marker=_marker(rows, top + foot),
        number=normalize_number(number) if number else None,
        printed_number=number,
        title=title,
        titled=title is not None and TITLE_WORDS.search(title) is not None,
        continues=any(CONTINUED_HERE.search(r.text) for r in top),
        continued=any(CONTINUED_NEXT.search(r.text) for r in rows[-6:] + foot),
        closes=any(_closing(r.text) for r in rows if r.top >= height * 0.4),
        letterhead=frozenset(
            w
            for r in (top or rows[:LETTERHEAD_ROWS])
            for w in re.findall(r"[a-z0-9]{3,}", r.text)
            if not w.isdigit()
        ),
    )


def rows_of(words: tuple[Word, ...]) -> list[Row]:
    """Words grouped into visual lines (centres within half a line height), top to bottom.
    Not the reader's line ids: a label and its value in two table cells are one row here."""
    ordered = sorted(words, key=lambda w: ((w.box[1] + w.box[3]) / 2, w.box[0]))
    groups: list[list[Word]] = []
    for word in ordered:
        centre = (word.box[1] + word.box[3]) / 2
        if groups:
            last = groups[-1]
            last_centre = statistics.fmean((w.box[1] + w.box[3]) / 2 for w in last)
            last_height = max(max(w.box[3] - w.box[1] for w in last), 1)
            if abs(centre - last_centre) <= last_height / 2:
                last.append(word)
                continue
        groups.append([word])
    rows = []
    for group in groups:
        group.sort(key=lambda w: w.box[0])
        text = _fold(" ".join(w.text for w in group))
        rows.append(
            Row(text, min(w.box[1] for w in group), max(w.box[3] for w in group), len(group))
        )
    return rows


def _marker(rows: list[Row], bands: list[Row]) -> tuple[int, int | None] | None:
    for row in rows:  # "page 2 of 3" anywhere on the page
        if match := MARKER.search(row.text):
            page, total = int(match[1]), int(match[2])
            if 1 <= page <= total:
                return page, total
    for row in bands:  # "2/3", "- 2 -", "page 2": only in the header or footer band
        if match := BARE_MARKER.match(row.text):
            if match[3]:
                return int(match[3]), None
            page, total = int(match[1]), int(match[2])
            if 1 <= page <= total:
                return page, total
        elif match := MARKER_NO_TOTAL.search(row.text):
            return int(match[1]), None
    return None


def _closing(text: str) -> bool:
    """A line a document ends with: a total with its amount (not a subtotal or an amount
    carried forward), or a closing greeting."""
    if NOT_CLOSING.search(text):
        return False
    amount = CLOSING_AMOUNT.search(text) is not None and any(c.isdigit() for c in text)
    return amount or CLOSING_WORDS.search(text) is not None


def _number(rows: list[Row]) -> str | None:
    """The first labelled document number (its value holds a digit: a date-free id)."""
    for row in rows:
        for match in NUMBER.finditer(row.text):
            value = match["value"].rstrip(".,;:")
            if any(c.isdigit() for c in value) and not _looks_like_date(value):
                return value
    return None


def _looks_like_date(value: str) -> bool:
    return re.fullmatch(r"\d{1,4}[./-]\d{1,2}[./-]\d{1,4}", value) is not None


def _title(rows: list[Row], page_height: int) -> str | None:
    """The largest line in the top 40% of the page, when it stands out as a heading."""
    if len(rows) < 2:
        return None
    median = statistics.median(r.height for r in rows)
    candidates = [
        r
        for r in rows
        if r.top <= page_height * TITLE_BAND
        and r.words <= TITLE_MAX_WORDS
        and r.height >= median * TITLE_MIN_SIZE
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda r: r.height).text


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()
