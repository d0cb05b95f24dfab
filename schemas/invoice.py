"""Invoice: header, parties, line items, taxes and totals, with arithmetic checks."""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from schemas.base import ExtractionSchema
from schemas.types import CurrencyCode, IsoDate, LongText, Money, Percent, Quantity, ShortText

# Tolerances of the arithmetic rules, in the invoice's currency: rounding per line and per sum.
LINE_TOLERANCE = Decimal("0.01")
SUM_TOLERANCE_PER_LINE = Decimal("0.01")
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
    schema_version: ClassVar[str] = "1.0"
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
    iban: ShortText | None = Field(None, description="IBAN or bank account for payment.")

    def review_reasons(self) -> list[str]:
        reasons = super().review_reasons()
        for number, item in enumerate(self.line_items, start=1):
            if None not in (item.quantity, item.unit_price, item.amount):
                expected = item.quantity * item.unit_price  # type: ignore[operator]
                if abs(expected - item.amount) > LINE_TOLERANCE:  # type: ignore[operator]
                    reasons.append(
                        f"line {number}: amount {item.amount} != quantity {item.quantity} "
                        f"x unit price {item.unit_price} (= {expected}, tolerance {LINE_TOLERANCE})"
                    )
        amounts = [item.amount for item in self.line_items if item.amount is not None]
        if self.subtotal is not None and amounts and len(amounts) == len(self.line_items):
            tolerance = SUM_TOLERANCE_PER_LINE * len(amounts)
            if abs(sum(amounts, Decimal(0)) - self.subtotal) > tolerance:
                reasons.append(
                    f"line items sum to {sum(amounts, Decimal(0))}, subtotal is {self.subtotal} "
                    f"(tolerance {tolerance})"
                )
        tax = self.tax_total
        if tax is None and self.tax_lines and all(t.amount is not None for t in self.tax_lines):
            tax = sum((t.amount or Decimal(0) for t in self.tax_lines), Decimal(0))
        if (
            None not in (self.subtotal, tax, self.total)
            and abs(self.subtotal + tax - self.total) > TOTAL_TOLERANCE  # type: ignore[operator]
        ):
            reasons.append(
                f"subtotal {self.subtotal} + tax {tax} != total {self.total} "
                f"(tolerance {TOTAL_TOLERANCE})"
            )
        if self.issue_date and self.due_date and self.due_date < self.issue_date:
            reasons.append(f"due date {self.due_date} is before issue date {self.issue_date}")
        return reasons
