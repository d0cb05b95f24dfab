"""Invoice: header, parties, line items, taxes and totals, with arithmetic checks.

The rules below turn a valid record into `needs_review`, each with a reason a clerk can act on.
Tolerances are explicit and in the invoice's currency: printed amounts are rounded to cents, so a
line may be off by a cent, and a sum of n rounded lines by n cents.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from schemas.base import ExtractionSchema
from schemas.types import (
    CurrencyCode,
    Iban,
    IsoDate,
    LongText,
    Money,
    Percent,
    Quantity,
    ShortText,
    iban_checksum_ok,
)

# |quantity x unit price - line amount| may be at most this (the line amount is rounded).
LINE_TOLERANCE = Decimal("0.01")
# |sum of line amounts - subtotal| may be at most this per line (each line was rounded).
SUM_TOLERANCE_PER_LINE = Decimal("0.01")
# |subtotal + tax - total| and |sum of tax lines - tax total| may be at most this.
TOTAL_TOLERANCE = Decimal("0.02")


class Party(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: ShortText | None = Field(None, description="Company or person name.")
    address: LongText | None = Field(None, description="Postal address on one line.")
    tax_id: ShortText | None = Field(None, description="VAT or tax identification number.")


class LineItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: LongText | None = Field(None, description="What was sold, as printed.")
    quantity: Quantity | None = Field(None, description="Number of units.")
    unit_price: Money | None = Field(None, description="Price of one unit.")
    amount: Money | None = Field(None, description="Line total as printed.")


class TaxLine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rate: Percent | None = Field(None, description="Tax rate in percent, e.g. 19 for 19%.")
    amount: Money | None = Field(None, description="Tax amount for this rate.")


class Invoice(ExtractionSchema):
    """An invoice or bill."""

    schema_name: ClassVar[str] = "invoice"
    schema_version: ClassVar[str] = "1.1"
    summary: ClassVar[str] = "an invoice or bill: seller, buyer, line items, taxes and totals"
    required_fields: ClassVar[tuple[str, ...]] = ("invoice_number", "issue_date", "total")

    invoice_number: ShortText | None = Field(None, description="The invoice number or id.")
    issue_date: IsoDate | None = Field(None, description="Date the invoice was issued.")
    due_date: IsoDate | None = Field(None, description="Date payment is due.")
    purchase_order: ShortText | None = Field(None, description="Purchase order (PO) number.")
    currency: CurrencyCode | None = Field(
        None, description="ISO 4217 currency code, e.g. EUR, USD."
    )
    seller: Party | None = Field(None, description="Who issued the invoice.")
    buyer: Party | None = Field(None, description="Who is billed.")
    line_items: list[LineItem] = Field(
        default_factory=list, max_length=60, description="Every billed line, top to bottom."
    )
    subtotal: Money | None = Field(None, description="Sum of the lines before tax.")
    tax_lines: list[TaxLine] = Field(
        default_factory=list, max_length=6, description="Tax per rate (VAT, sales tax)."
    )
    tax_total: Money | None = Field(None, description="Total tax.")
    total: Money | None = Field(None, description="Grand total including tax.")
    amount_due: Money | None = Field(None, description="Amount still to pay.")
    payment_terms: LongText | None = Field(None, description="Payment terms as printed.")
    iban: Iban | None = Field(None, description="IBAN to pay to, as printed.")

    def review_reasons(self) -> list[str]:
        """Required fields, then each rule in `RULES` (empty: the record is consistent)."""
        reasons = super().review_reasons()
        for rule in RULES:
            reasons += rule(self)
        return reasons

    def rule_paths(self) -> list[str]:
        """The fields each failed rule in `RULES` involves (see `ExtractionSchema.rule_paths`)."""
        paths: list[str] = []
        for number, item in enumerate(self.line_items):
            if line_amounts_match(self.model_copy(update={"line_items": [item]})):
                paths += [f"line_items[{number}].{k}" for k in ("quantity", "unit_price", "amount")]
        if lines_sum_to_subtotal(self):
            paths += ["subtotal", *(f"line_items[{i}].amount" for i in range(len(self.line_items)))]
        if tax_lines_sum_to_tax_total(self):
            paths += ["tax_total", *(f"tax_lines[{i}].amount" for i in range(len(self.tax_lines)))]
        if subtotal_plus_tax_is_total(self):
            paths += ["subtotal", "tax_total", "total"]
        if due_not_before_issue(self):
            paths += ["issue_date", "due_date"]
        if iban_verifies(self):
            paths.append("iban")
        return list(dict.fromkeys(paths))

    def tax(self) -> Decimal | None:
        """The tax total as printed, else the sum of the tax lines when all have an amount."""
        if self.tax_total is not None:
            return self.tax_total
        if self.tax_lines and all(t.amount is not None for t in self.tax_lines):
            return sum((t.amount for t in self.tax_lines if t.amount is not None), Decimal(0))
        return None


def line_amounts_match(invoice: Invoice) -> list[str]:
    """Every line with quantity, unit price and amount: amount = quantity x unit price."""
    reasons = []
    for number, item in enumerate(invoice.line_items, start=1):
        if item.quantity is None or item.unit_price is None or item.amount is None:
            continue
        expected = item.quantity * item.unit_price
        if abs(expected - item.amount) > LINE_TOLERANCE:
            reasons.append(
                f"line {number}: amount {item.amount} != quantity {item.quantity} "
                f"x unit price {item.unit_price} (= {expected.quantize(LINE_TOLERANCE)}, "
                f"tolerance {LINE_TOLERANCE})"
            )
    return reasons


def lines_sum_to_subtotal(invoice: Invoice) -> list[str]:
    """When every line has an amount: their sum equals the subtotal."""
    amounts = [item.amount for item in invoice.line_items if item.amount is not None]
    if invoice.subtotal is None or not amounts or len(amounts) != len(invoice.line_items):
        return []
    total, tolerance = sum(amounts, Decimal(0)), SUM_TOLERANCE_PER_LINE * len(amounts)
    if abs(total - invoice.subtotal) <= tolerance:
        return []
    return [f"line items sum to {total}, subtotal is {invoice.subtotal} (tolerance {tolerance})"]


def tax_lines_sum_to_tax_total(invoice: Invoice) -> list[str]:
    """When the tax total and every tax line's amount are read: the lines add up to it."""
    amounts = [t.amount for t in invoice.tax_lines if t.amount is not None]
    if invoice.tax_total is None or not amounts or len(amounts) != len(invoice.tax_lines):
        return []
    total = sum(amounts, Decimal(0))
    if abs(total - invoice.tax_total) <= TOTAL_TOLERANCE:
        return []
    return [
        f"tax lines sum to {total}, tax total is {invoice.tax_total} (tolerance {TOTAL_TOLERANCE})"
    ]


def subtotal_plus_tax_is_total(invoice: Invoice) -> list[str]:
    """subtotal + tax (printed, or the sum of tax lines) = total."""
    tax = invoice.tax()
    if invoice.subtotal is None or tax is None or invoice.total is None:
        return []
    if abs(invoice.subtotal + tax - invoice.total) <= TOTAL_TOLERANCE:
        return []
    return [
        f"subtotal {invoice.subtotal} + tax {tax} != total {invoice.total} "
        f"(tolerance {TOTAL_TOLERANCE})"
    ]


def due_not_before_issue(invoice: Invoice) -> list[str]:
    if invoice.issue_date and invoice.due_date and invoice.due_date < invoice.issue_date:
        return [f"due date {invoice.due_date} is before issue date {invoice.issue_date}"]
    return []


def iban_verifies(invoice: Invoice) -> list[str]:
    """A misread digit in an IBAN sends money elsewhere: its check digits must verify."""
    if invoice.iban is None or iban_checksum_ok(invoice.iban):
        return []
    return [f"IBAN {invoice.iban!r} fails its check digits (ISO 13616 mod 97): misread?"]


RULES: tuple[Callable[[Invoice], list[str]], ...] = (
    line_amounts_match,
    lines_sum_to_subtotal,
    tax_lines_sum_to_tax_total,
    subtotal_plus_tax_is_total,
    due_not_before_issue,
    iban_verifies,
)
