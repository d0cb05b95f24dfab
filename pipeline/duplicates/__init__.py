"""Duplicates: is this invoice one the store already holds? (pure logic; the SQL that finds
candidates lives in `pipeline.store.duplicates`.)

- `keys`: what identifies an invoice: its seller (VAT id, IBAN or normalized name; every one
  the record has), its invoice number normalized (spaces, hyphens and other separators, leading
  zeros and case removed), total, currency, issue date, and the label a clerk reads.
- `match`: the rule: the same seller and number ("same number"); else a near match (same
  seller, total within 1%, issue dates within 30 days, numbers within edit distance 2); the
  evidence handed to `finalize` (review reasons, never a drop) and to `save` (keys, pairs).

Settings: `Settings.duplicates` (`DuplicatesSettings`).
"""

from pipeline.duplicates.keys import InvoiceKey, edit_distance, invoice_key, normalize_number
from pipeline.duplicates.match import Candidate, DuplicateEvidence, match_kind

__all__ = [
    "Candidate",
    "DuplicateEvidence",
    "InvoiceKey",
    "edit_distance",
    "invoice_key",
    "match_kind",
    "normalize_number",
]
