"""Values as people print them, normalized the way the schemas normalize them.

Amounts compare as Decimal values (`schemas.types.parse_amount` on the printed digits, after
currency symbols, codes and captions such as `RM`, `EUR`, `Total:` are stripped); dates compare
as calendar days (numeric day/month order is ambiguous, so both readings are kept; two-digit
years are 2000-2069 or 1970-1999; English, German and French month names); identifiers and text
compare as their letters and digits only, case-folded and without accents.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date
from decimal import Decimal

from schemas.types import parse_amount

_GROUPED = r"\d{1,3}(?:[ .,'’\u00a0\u202f]\d{3})+"
_NUMBER = rf"(?:{_GROUPED}|\d+)(?:[.,]\d{{1,4}})?"
_AMOUNT = re.compile(
    r"(?P<pre>(?:[A-Za-z]{1,3}\s?)?[$€£¥₹]|[A-Za-z]{2,3}|[^\W\d_]+:)?\s*"
    rf"(?P<num>[-−+]?\(?[-−]?{_NUMBER}\)?-?)"
    r"\s*(?P<post>[$€£¥₹%]|[A-Za-z]{2,3})?[.,:;]?"
)

MONTHS = {
    # English
    "jan": 1, "january": 1, "feb": 2, "february": 2, "mar": 3, "march": 3, "apr": 4,
    "april": 4, "may": 5, "jun": 6, "june": 6, "jul": 7, "july": 7, "aug": 8, "august": 8,
    "sep": 9, "sept": 9, "september": 9, "oct": 10, "october": 10, "nov": 11, "november": 11,
    "dec": 12, "december": 12,
    # German
    "januar": 1, "jan.": 1, "februar": 2, "marz": 3, "maerz": 3, "mai": 5, "juni": 6, "juli": 7,
    "oktober": 10, "okt": 10, "dezember": 12, "dez": 12,
    # French (accents stripped)
    "janvier": 1, "janv": 1, "fevrier": 2, "fevr": 2, "fev": 2, "mars": 3, "avril": 4,
    "avr": 4, "juin": 6, "juillet": 7, "juil": 7, "aout": 8, "septembre": 9, "octobre": 10,
    "novembre": 11, "decembre": 12,
}  # fmt: skip
_MONTH = "|".join(sorted((re.escape(m) for m in MONTHS), key=len, reverse=True))
_DAY_MONTH_YEAR = re.compile(
    rf"(\d{{1,2}})(?:st|nd|rd|th|er)?\.?[\s/-]*({_MONTH})\.?,?[\s/-]*(\d{{4}}|\d{{2}})"
)
_MONTH_DAY_YEAR = re.compile(rf"({_MONTH})\.?\s*(\d{{1,2}})(?:st|nd|rd|th)?,?\s*(\d{{4}})")
_ISO = re.compile(r"(?<!\d)(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?!\d)")
_NUMERIC = re.compile(r"(?<!\d)(\d{1,2})[./-](\d{1,2})[./-](\d{4}|\d{2})(?!\d)")


def fold(text: str) -> str:
    """Case-folded, accents removed: `Gdańsk` -> `gdansk`."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def letters_digits(text: str) -> str:
    """Only letters and digits of `fold(text)`: `DE 136/695-976` -> `de136695976`."""
    return "".join(c for c in fold(text) if c.isalnum())


def amount_in(text: str) -> Decimal | None:
    """The amount a printed span shows, or None: `1 234,56 EUR`, `(150.00)`, `RM8.20`, `$1,200`,
    `Total:` `12.5%` (the whole span must be the amount with its currency or caption)."""
    match = _AMOUNT.fullmatch(text.strip())
    if match is None:
        return None
    number = match["num"]
    if match["pre"] and match["pre"][-1].isalpha() and number[0] in "-−+":
        return None  # `PO-77120` is an identifier, not minus 77120
    try:
        return parse_amount(number.replace("\u00a0", " ").replace("\u202f", " ").replace("’", "'"))
    except ValueError:
        return None


def as_amount(value: object) -> Decimal | None:
    """A record's amount (`"1450.00"`, 12, Decimal) as a Decimal, or None when it is not one."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        return parse_amount(value)
    except ValueError:
        return None


def as_date(value: object) -> date | None:
    """A record's date (ISO `2025-03-14` or a date) as a date, or None."""
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip()[:10])
        except ValueError:
            return None
    return None


def _year(text: str) -> int:
    year = int(text)
    if len(text) == 2:
        year += 2000 if year < 70 else 1900
    return year


def _day(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def dates_in(text: str, whole: bool = False) -> set[date]:
    """Every calendar day a printed span can mean: `02 Juillet 2015`, `07/02/2015` (both
    7 Feb and 2 Jul), `2 Feb 2015`, `Feb 2, 2015`, `18.11.2017`, `29-01-18`, `2018-01-05`.

    With `whole`, a month-name date must span the whole text (a multi-word span); numeric
    dates are searched inside the text (`Date:18.11.2017`).
    """
    folded = fold(text).strip(" ,;:()[]")
    found: set[date] = set()
    for pattern, order in ((_DAY_MONTH_YEAR, "dmy"), (_MONTH_DAY_YEAR, "mdy")):
        hits = [pattern.fullmatch(folded)] if whole else list(pattern.finditer(folded))
        for hit in hits:
            if hit is None:
                continue
            first, second, year = hit.groups()
            day, month = (first, second) if order == "dmy" else (second, first)
            found.add(_day(_year(year), MONTHS[month], int(day)) or date.min)
    if whole:
        found.discard(date.min)
        return found
    for hit in _ISO.finditer(folded):
        found.add(_day(int(hit[1]), int(hit[2]), int(hit[3])) or date.min)
    for hit in _NUMERIC.finditer(folded):
        first, second, year = int(hit[1]), int(hit[2]), _year(hit[3])
        found.add(_day(year, second, first) or date.min)
        found.add(_day(year, first, second) or date.min)
    found.discard(date.min)
    return found


CURRENCY_MARKS = {
    "EUR": ("€",),
    "USD": ("$", "US$"),
    "GBP": ("£",),
    "JPY": ("¥",),
    "CHF": ("Fr.", "SFr."),
    "INR": ("₹",),
    "MYR": ("RM",),
}


def currency_marks(code: str) -> tuple[str, ...]:
    """What a page may print for an ISO 4217 code besides the code: `EUR` -> `€`."""
    return CURRENCY_MARKS.get(code.upper(), ())


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions of one character)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def similarity(a: str, b: str) -> float:
    """1 - edit distance / longer length, in [0, 1] (1.0 for two empty strings)."""
    longest = max(len(a), len(b))
    return 1.0 - levenshtein(a, b) / longest if longest else 1.0


def similarity_at_least(a: str, b: str, floor: float) -> float | None:
    """`similarity(a, b)` when it is at least `floor`, else None, in O(len * band) time: the
    edit distance is computed only within the band of `(1 - floor) * longer length` around the
    diagonal, and given up as soon as a whole row exceeds it. (Full Levenshtein on two 200
    character texts is 40,000 steps in Python; a model's made-up paragraph against every run of
    a dense page's words took minutes.)"""
    longest = max(len(a), len(b))
    if not longest:
        return 1.0
    limit = int((1.0 - floor) * longest + 1e-9)
    if abs(len(a) - len(b)) > limit:
        return None
    if len(a) < len(b):
        a, b = b, a
    big = limit + 1
    previous = [j if j <= limit else big for j in range(len(b) + 1)]
    for i, ca in enumerate(a, 1):
        low, high = max(1, i - limit), min(len(b), i + limit)
        current = [big] * (len(b) + 1)
        current[0] = i if i <= limit else big
        best = current[0]
        for j in range(low, high + 1):
            cost = previous[j - 1] + (ca != b[j - 1])
            value = min(cost, previous[j] + 1, current[j - 1] + 1, big)
            current[j] = value
            best = min(best, value)
        if best > limit:
            return None
        previous = current
    distance = previous[-1]
    return None if distance > limit else 1.0 - distance / longest
