"""Field types shared by the schemas: normalized on validation, bounded for the grammar.

Each type carries two contracts. The JSON Schema (what the grammar enforces during decoding) bounds
lengths and formats so that even a random-weight model cannot run away. The Python side
(what Pydantic validates) normalizes what people print: `1.234,56`, `(12.00)`, `$ 1,200`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, StringConstraints, WithJsonSchema

# Amounts as printed: optional sign or parentheses, digits grouped by . , ' or space, at most two
# decimals. Symbols are not part of the grammar (currency is its own field) but the parser below
# accepts them, for backends that do not constrain decoding.
_AMOUNT_BODY = r"[0-9]{1,3}(?:[.,' ]?[0-9]{3}){0,4}(?:[.,][0-9]{1,2})?"
AMOUNT_PATTERN = rf"^(?:-?{_AMOUNT_BODY}|\({_AMOUNT_BODY}\))$"
_QUANTITY_BODY = r"[0-9]{1,3}(?:[.,' ]?[0-9]{3}){0,2}(?:[.,][0-9]{1,3})?"
QUANTITY_PATTERN = rf"^-?{_QUANTITY_BODY}$"
PERCENT_PATTERN = r"^[0-9]{1,2}(?:[.,][0-9]{1,2})?$"

# Only real calendar days (leap days are left to the Python check).
DATE_PATTERN = (
    r"^(?:19|20)[0-9]{2}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    r"|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-9]))$"
)
CURRENCY_PATTERN = r"^[A-Z]{3}$"
# Chart values and other plain numbers: grouped digits, up to four decimals, a sign.
_NUMBER_BODY = r"[0-9]{1,3}(?:[.,' ]?[0-9]{3}){0,4}(?:[.,][0-9]{1,4})?"
NUMBER_PATTERN = rf"^-?{_NUMBER_BODY}$"
# An IBAN as printed: country, check digits, then 10 to 30 letters or digits, in groups or not.
IBAN_PATTERN = r"^[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){10,30}$"

_SYMBOLS = re.compile(r"[€$£¥₹₽₩₺₪฿₫₦\s]|[A-Z]{3}|CHF|Fr\.?|kr\.?|zł", re.IGNORECASE)


def parse_amount(value: Any) -> Decimal | None:
    """Parse a printed amount into a Decimal.

    Handles thousands separators (`,` `.` `'` space), a decimal comma, currency symbols or codes,
    a leading or trailing minus and accounting parentheses. Raises ValueError when it cannot.
    """
    if value is None or isinstance(value, Decimal):
        return value
    if isinstance(value, bool):
        raise ValueError("an amount cannot be a boolean")
    if isinstance(value, int | float):
        return Decimal(str(value))
    text = str(value).strip()
    if not text:
        return None
    negative = False
    if text.startswith("(") and text.endswith(")"):
        negative, text = True, text[1:-1]
    text = _SYMBOLS.sub("", text).replace("\u2212", "-")
    if text.endswith("-"):
        negative, text = not negative, text[:-1]
    if text.startswith("-"):
        negative, text = not negative, text[1:]
    text = text.replace("'", "")
    if not re.fullmatch(r"[0-9.,]+", text or "x"):
        raise ValueError(f"not an amount: {value!r}")
    text = _normalize_separators(text)
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"not an amount: {value!r}") from None
    return -amount if negative else amount


def _normalize_separators(text: str) -> str:
    """Decide which of `.` and `,` is the decimal mark; return a plain `1234.56` string."""
    last_dot, last_comma = text.rfind("."), text.rfind(",")
    if last_dot >= 0 and last_comma >= 0:
        decimal_mark = "." if last_dot > last_comma else ","
    elif last_dot >= 0 or last_comma >= 0:
        mark = "." if last_dot >= 0 else ","
        groups = text.split(mark)
        # One separator followed by exactly three digits is a thousands separator (1,234 / 1.234);
        # anything else (1,5 / 12.50) is a decimal mark.
        thousands = len(groups) > 2 or (len(groups) == 2 and len(groups[1]) == 3)
        decimal_mark = "" if thousands else mark
    else:
        return text
    thousands_mark = "," if decimal_mark == "." else "."
    text = (
        text.replace(thousands_mark, "") if decimal_mark else text.replace(".", "").replace(",", "")
    )
    if decimal_mark and text.count(decimal_mark) > 1:
        raise ValueError(f"more than one decimal mark in {text!r}")
    return text.replace(",", ".")


def parse_percent(value: Any) -> Decimal | None:
    if value is None or isinstance(value, Decimal):
        return value
    text = str(value).strip().rstrip("%").strip().replace(",", ".")
    try:
        return Decimal(text)
    except InvalidOperation:
        raise ValueError(f"not a percentage: {value!r}") from None


def parse_date(value: Any) -> Any:
    """Accept `DD.MM.YYYY` (unambiguous: day first wherever dots are used) besides ISO dates.

    Anything else is passed on for Pydantic's own date parsing (which accepts ISO only), so an
    ambiguous `03/04/2025` is rejected instead of guessed.
    """
    if isinstance(value, str):
        match = re.fullmatch(r"\s*([0-9]{1,2})\.\s?([0-9]{1,2})\.\s?([0-9]{4})\s*", value)
        if match:
            day, month, year = (int(g) for g in match.groups())
            return date(year, month, day)
    return value


def _decimal_to_str(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


@dataclass(frozen=True)
class Places:
    """Marks a Decimal type with the most decimal places its grammar pattern lets a value have:
    the scale of its decimal column in exports (Pydantic ignores it; validation is unchanged)."""

    count: int


def _json_string(pattern: str, max_length: int, description: str) -> WithJsonSchema:
    return WithJsonSchema(
        {"type": "string", "pattern": pattern, "maxLength": max_length, "description": description}
    )


Money = Annotated[
    Decimal,
    BeforeValidator(parse_amount),
    PlainSerializer(_decimal_to_str, return_type=str),
    _json_string(AMOUNT_PATTERN, 22, "amount as printed, without currency symbol"),
    Places(2),
]
Quantity = Annotated[
    Decimal,
    BeforeValidator(parse_amount),
    PlainSerializer(_decimal_to_str, return_type=str),
    _json_string(QUANTITY_PATTERN, 16, "quantity as printed"),
    Places(3),
]
Percent = Annotated[
    Decimal,
    BeforeValidator(parse_percent),
    PlainSerializer(_decimal_to_str, return_type=str),
    _json_string(PERCENT_PATTERN, 6, "percentage without the % sign"),
    Places(2),
]
IsoDate = Annotated[
    date,
    BeforeValidator(parse_date),
    PlainSerializer(lambda d: d.isoformat(), return_type=str),
    _json_string(DATE_PATTERN, 10, "date as YYYY-MM-DD"),
]


# Symbols that name one currency unambiguously enough for a back office ($ is USD unless the
# model says otherwise: the grammar asks for the code, this only helps unconstrained backends).
CURRENCY_SYMBOLS = {"€": "EUR", "$": "USD", "US$": "USD", "£": "GBP", "¥": "JPY", "FR.": "CHF"}


def _currency(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    code = value.strip().upper()
    return CURRENCY_SYMBOLS.get(code, code)


CurrencyCode = Annotated[
    str,
    BeforeValidator(_currency),
    StringConstraints(pattern=CURRENCY_PATTERN),
    _json_string(CURRENCY_PATTERN, 3, "ISO 4217 code"),
]


def bounded(max_length: int) -> StringConstraints:
    """Constraint of a stripped string of at most `max_length` characters (the grammar enforces
    the bound): `Annotated[str, bounded(80)]`."""
    return StringConstraints(strip_whitespace=True, max_length=max_length)


def text(max_length: int) -> Any:
    """A stripped string of at most `max_length` characters (the grammar enforces the bound)."""
    return Annotated[str, bounded(max_length)]


ShortText = text(80)
LongText = text(240)


Number = Annotated[
    Decimal,
    BeforeValidator(parse_amount),
    PlainSerializer(_decimal_to_str, return_type=str),
    _json_string(NUMBER_PATTERN, 24, "number as printed, without unit"),
    Places(4),
]


def normalize_iban(value: Any) -> Any:
    """`de89 3704-0044 0532 0130 00` -> `DE89 3704 0044 0532 0130 00` (groups of four)."""
    if not isinstance(value, str):
        return value
    compact = re.sub(r"[\s-]", "", value).upper()
    if compact.startswith("IBAN"):
        compact = compact[4:].lstrip(":")
    return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))


def iban_checksum_ok(value: str) -> bool:
    """True when the IBAN's check digits verify (ISO 13616: the number mod 97 equals 1)."""
    compact = value.replace(" ", "")
    if not re.fullmatch(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{10,30}", compact):
        return False
    digits = "".join(str(int(c, 36)) for c in compact[4:] + compact[:4])
    return int(digits) % 97 == 1


Iban = Annotated[
    str,
    BeforeValidator(normalize_iban),
    StringConstraints(pattern=r"^[A-Z]{2}[0-9]{2}(?: [A-Z0-9]{1,4}){3,8}$"),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": IBAN_PATTERN,
            "maxLength": 42,
            "description": "IBAN, letters and digits as printed",
        }
    ),
]
