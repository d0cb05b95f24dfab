"""What identifies an invoice, normalized so that two readings of the same paper agree."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

# Legal forms dropped from a seller's name: "ACME GmbH" and "Acme" are one seller.
_LEGAL_FORMS = frozenset(
    "gmbh mbh ag kg ohg ug ltd limited llc llp inc corp co plc sa sas sarl srl spa bv nv ab "  # noqa: SIM905
    "as oy aps sl se eg ev kgaa gbr the".split()
)
_NOT_ALNUM = re.compile(r"[^0-9a-z]+")
_LEADING_ZEROS = re.compile(r"(?<![0-9])0+(?=[0-9])")
MAX_KEY = 160


@dataclass(frozen=True)
class InvoiceKey:
    """An invoice's identity: `sellers` ("vat:DE123456789", "iban:DE89...", "name:acme"; each
    the record has), the normalized `number`, `total`, `currency`, `issue_date`, and `label`
    ("invoice INV-2024-5847 from ACME GmbH, 1,234.00 EUR, 2026-11-02")."""

    sellers: tuple[str, ...]
    number: str | None
    total: Decimal | None
    currency: str | None
    issue_date: date | None
    label: str


def invoice_key(record: dict[str, Any]) -> InvoiceKey | None:
    """The key of an invoice record (its JSON form); None when it names no seller, or neither
    a number nor a total and date: nothing to compare it by."""
    seller = record.get("seller") or {}
    sellers = tuple(
        key
        for key in (
            _prefixed("vat", _alnum(seller.get("tax_id"))),
            _prefixed("iban", _alnum(record.get("iban"))),
            _prefixed("name", normalize_name(seller.get("name"))),
        )
        if key
    )
    number = normalize_number(record.get("invoice_number"))
    total = _decimal(record.get("total"))
    issued = _date(record.get("issue_date"))
    if not sellers or (number is None and (total is None or issued is None)):
        return None
    return InvoiceKey(sellers, number, total, record.get("currency"), issued, _label(record))


def normalize_number(number: object) -> str | None:
    """`INV-2024-0058`, `inv 2024 58` and `INV/2024/058` -> `inv202458`: separators, leading
    zeros of each digit group, and case removed. None when nothing is left."""
    if not isinstance(number, str):
        return None
    groups = _NOT_ALNUM.sub(" ", _fold(number))  # separators first: each group's zeros go
    return _LEADING_ZEROS.sub("", groups).replace(" ", "")[:64] or None


def normalize_name(name: object) -> str | None:
    """A seller's name without case, accents, punctuation or legal form (`ACME GmbH` ->
    `acme`); None when nothing is left."""
    if not isinstance(name, str):
        return None
    words = [w for w in _NOT_ALNUM.split(_fold(name)) if w and w not in _LEGAL_FORMS]
    return "".join(words)[:MAX_KEY] or None


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, left in enumerate(a, start=1):
        current = [i]
        for j, right in enumerate(b, start=1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (left != right))
            )
        previous = current
    return previous[-1]


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def _alnum(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    return _NOT_ALNUM.sub("", value.lower()).upper() or None


def _prefixed(kind: str, value: str | None) -> str | None:
    return f"{kind}:{value}"[:MAX_KEY] if value else None


def _decimal(value: object) -> Decimal | None:
    try:
        return Decimal(str(value)) if value is not None else None
    except InvalidOperation:
        return None


def _date(value: object) -> date | None:
    try:
        return date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _label(record: dict[str, Any]) -> str:
    """`invoice INV-2024-5847 from ACME GmbH, 1,234.00 EUR, 2026-11-02`, with what is known."""
    number = record.get("invoice_number") or "without number"
    seller = (record.get("seller") or {}).get("name") or (record.get("seller") or {}).get("tax_id")
    parts = [f"invoice {number}" + (f" from {seller}" if seller else "")]
    total = _decimal(record.get("total"))
    if total is not None:
        parts.append(f"{total:,.2f}" + (f" {record['currency']}" if record.get("currency") else ""))
    if record.get("issue_date"):
        parts.append(str(record["issue_date"]))
    return ", ".join(parts)
