"""Form: a title and its fields as label/value pairs with a kind, in reading order.

Checkboxes and signatures carry `checked` (ticked / signed) instead of a value. Number and date
values are normalized on validation (`1.250,00` -> `1250.00`, `06.05.2025` -> `2025-05-06`); a
value that cannot be read as its kind is kept as written and flagged for review.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.base import ExtractionSchema
from schemas.types import bounded, parse_amount, parse_date

Label = Annotated[str, bounded(100)]
Value = Annotated[str, bounded(120)]
Title = Annotated[str, bounded(160)]
FieldKind = Literal["text", "number", "date", "checkbox", "signature"]
MARK_KINDS: tuple[FieldKind, ...] = ("checkbox", "signature")


class FormField(BaseModel):
    """One field of a form: its printed label, its kind and what was filled in."""

    model_config = ConfigDict(extra="forbid")

    label: Label | None = Field(
        None, description="The field's printed label or question, e.g. 'Date of birth'."
    )
    kind: FieldKind = Field(
        "text",
        description="text, number, date, checkbox (a box to tick) or signature (a line to sign).",
    )
    value: Value | None = Field(
        None,
        description="What is filled in, as written (dates as YYYY-MM-DD); null when empty and "
        "for checkbox and signature fields.",
    )
    checked: bool | None = Field(
        None,
        description="checkbox: true if ticked, false if not; signature: true if signed, false "
        "if blank; null for the other kinds.",
    )

    @model_validator(mode="after")
    def _normalize_value(self) -> FormField:
        """Numbers and dates in one spelling, so records compare; unreadable ones stay as is."""
        if self.value is None:
            return self
        if self.kind == "number":
            try:
                amount = parse_amount(self.value)
            except ValueError:
                return self
            self.value = None if amount is None else format(amount, "f")
        elif self.kind == "date":
            parsed = _as_date(self.value)
            if parsed is not None:
                self.value = parsed.isoformat()
        return self

    def problem(self) -> str | None:
        """Why this field needs a human look, or None."""
        if self.kind in MARK_KINDS and self.checked is None:
            verb = "ticked" if self.kind == "checkbox" else "signed"
            return f"not read as {verb} or not"
        if self.kind == "number" and self.value is not None and not _is_number(self.value):
            return f"value {self.value!r} is not a number"
        if self.kind == "date" and self.value is not None and _as_date(self.value) is None:
            return f"value {self.value!r} is not a date (YYYY-MM-DD)"
        return None


def _as_date(value: str) -> date | None:
    parsed = parse_date(value)
    if isinstance(parsed, date):
        return parsed
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        return None


def _is_number(value: str) -> bool:
    try:
        return parse_amount(value) is not None
    except ValueError:
        return False


class Form(ExtractionSchema):
    """A filled-in form: application, registration, claim, questionnaire."""

    schema_name: ClassVar[str] = "form"
    schema_version: ClassVar[str] = "1.0"
    summary: ClassVar[str] = "a filled-in form: labelled fields, checkboxes and signatures"
    required_fields: ClassVar[tuple[str, ...]] = ("fields",)

    title: Title | None = Field(None, description="The form's title as printed at its top.")
    fields: list[FormField] = Field(
        default_factory=list,
        max_length=60,
        description="Every field of the form in reading order (top to bottom, left to right), "
        "including empty ones, unticked checkboxes and signature lines.",
    )

    def review_reasons(self) -> list[str]:
        reasons = super().review_reasons()
        for number, field in enumerate(self.fields, start=1):
            problem = field.problem()
            if problem:
                name = field.label or f"field {number}"
                reasons.append(f"{name!r} ({field.kind}): {problem}")
        return reasons

    def get(self, label: str) -> FormField | None:
        """The first field whose label equals `label` (case and spacing ignored), or None."""
        wanted = " ".join(label.split()).casefold()
        return next(
            (f for f in self.fields if f.label and " ".join(f.label.split()).casefold() == wanted),
            None,
        )
