"""The duplicate rule, and the evidence it hands to `finalize` and `save`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from pipeline.duplicates.keys import InvoiceKey, edit_distance
from pipeline.settings import DuplicatesSettings

SAME_NUMBER, NEAR = "same_number", "near"


@dataclass(frozen=True)
class Candidate:
    """An invoice already stored that may be the same as this one: its document (id and the
    name a clerk knows it by), its stored key columns, and how it matched (`kind`)."""

    document_id: int
    document: str
    number: str | None
    total: Decimal | None
    issue_date: date | None
    label: str
    kind: str = ""

    @property
    def reason(self) -> str:
        """The review reason: `possible duplicate of invoice-a.pdf (invoice INV-2024-5847 from
        ACME GmbH, 1,234.00 EUR, 2026-11-02)`."""
        return f"possible duplicate of {self.document} ({self.label})"


def match_kind(key: InvoiceKey, other: Candidate, settings: DuplicatesSettings) -> str | None:
    """How `other` (same seller: the store's query) matches `key`: SAME_NUMBER, NEAR, or None."""
    if key.number is not None and key.number == other.number:
        return SAME_NUMBER
    if None in (key.total, other.total, key.issue_date, other.issue_date):
        return None
    assert key.total is not None and other.total is not None
    assert key.issue_date is not None and other.issue_date is not None
    close_total = abs(key.total - other.total) <= abs(key.total) * Decimal(
        str(settings.near_total_share)
    )
    close_date = abs((key.issue_date - other.issue_date).days) <= settings.near_days
    close_number = (
        key.number is not None
        and other.number is not None
        and edit_distance(key.number, other.number) <= settings.near_edit_distance
    )
    return NEAR if close_total and close_date and close_number else None


@dataclass
class DuplicateEvidence:
    """What the duplicate check found for one extraction: its key (stored at save, for the
    invoices after it) and the stored invoices it may duplicate (review reasons, and pairs that
    `docextract duplicates` lists)."""

    key: InvoiceKey
    matches: list[Candidate] = field(default_factory=list)

    def reasons(self) -> list[str]:
        return [candidate.reason for candidate in self.matches]
