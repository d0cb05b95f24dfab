"""Field types shared by the schemas: normalized on validation, bounded for the grammar.

Each type carries two contracts. The JSON Schema (what the grammar enforces during decoding) bounds
lengths and formats so that even a random-weight model cannot run away. The Python side
(what Pydantic validates) normalizes what people print: `1.234,56`, `(12.00)`, `$ 1,200`.
"""

from __future__ import annotations

import re
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


def _decimal_to_str(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def _json_string(pattern: str, max_length: int, description: str) -> WithJsonSchema:
    return WithJsonSchema(
        {"type": "string", "pattern": pattern, "maxLength": max_length, "description": description}
    )


Money = Annotated[
    Decimal,
    BeforeValidator(parse_amount),
    PlainSerializer(_decimal_to_str, return_type=str),
    _json_string(AMOUNT_PATTERN, 22, "amount as printed, without currency symbol"),
]
Quantity = Annotated[
    Decimal,
    BeforeValidator(parse_amount),
    PlainSerializer(_decimal_to_str, return_type=str),
    _json_string(QUANTITY_PATTERN, 16, "quantity as printed"),
]
Percent = Annotated[
    Decimal,
    BeforeValidator(parse_percent),
    PlainSerializer(_decimal_to_str, return_type=str),
    _json_string(PERCENT_PATTERN, 6, "percentage without the % sign"),
]
IsoDate = Annotated[
    date,
    PlainSerializer(lambda d: d.isoformat(), return_type=str),
    _json_string(DATE_PATTERN, 10, "date as YYYY-MM-DD"),
]


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


CurrencyCode = Annotated[
    str,
    BeforeValidator(_upper),
    StringConstraints(pattern=CURRENCY_PATTERN),
    WithJsonSchema({"type": "string", "pattern": CURRENCY_PATTERN, "description": "ISO 4217 code"}),
]


def text(max_length: int) -> Any:
    """A stripped string of at most `max_length` characters (the grammar enforces the bound)."""
    return Annotated[str, StringConstraints(strip_whitespace=True, max_length=max_length)]


ShortText = text(80)
LongText = text(240)
