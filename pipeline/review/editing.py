"""A reviewer's record, checked: validated by the schema's own Pydantic model, the schema's
business rules run again, and the per-field difference from the model's record."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from schemas import get_schema


@dataclass(frozen=True)
class Check:
    """The outcome of checking a record: `record` is the normalized record when `valid`;
    `errors` [{path, message}] when not; `reasons` are the rules' review reasons that remain."""

    valid: bool
    record: dict[str, Any] | None
    errors: list[dict[str, str]] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    diff: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "record": self.record,
            "errors": self.errors,
            "reasons": self.reasons,
            "diff": self.diff,
        }


def check_record(schema_name: str, record: Any, original: dict[str, Any] | None) -> Check:
    """Validate `record` (JSON, as the browser sends it) against the schema `schema_name` and run
    its rules. Raises ConfigError for an unknown schema."""
    schema = get_schema(schema_name)
    try:
        model = schema.model_validate(record)
    except ValidationError as exc:
        errors = [
            {"path": error_path(e["loc"]), "message": str(e["msg"])}
            for e in exc.errors(include_url=False)
        ]
        return Check(False, None, errors)
    normalized = model.model_dump(mode="json")
    return Check(True, normalized, [], model.review_reasons(), record_diff(original, normalized))


def error_path(location: tuple[Any, ...] | list[Any]) -> str:
    """A Pydantic error location as an evidence key: ('line_items', 0, 'amount') ->
    'line_items[0].amount'."""
    out = ""
    for part in location:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(record)"


def record_diff(before: Any, after: Any, path: str = "") -> list[dict[str, Any]]:
    """Every leaf that differs between two JSON records, as [{path, before, after}], paths in
    evidence-key form. Lists compare item by item (an added or deleted item is a leaf too)."""
    if isinstance(before, dict) and isinstance(after, dict):
        out: list[dict[str, Any]] = []
        for key in list(before) + [k for k in after if k not in before]:
            sub = f"{path}.{key}" if path else str(key)
            out += record_diff(before.get(key), after.get(key), sub)
        return out
    if isinstance(before, list) and isinstance(after, list):
        out = []
        for index in range(max(len(before), len(after))):
            b = before[index] if index < len(before) else None
            a = after[index] if index < len(after) else None
            out += record_diff(b, a, f"{path}[{index}]")
        return out
    if before is None and isinstance(after, dict | list):
        return record_diff(_empty_like(after), after, path)
    if after is None and isinstance(before, dict | list):
        return record_diff(before, _empty_like(before), path)
    return (
        [] if before == after else [{"path": path or "(record)", "before": before, "after": after}]
    )


def _empty_like(value: dict[str, Any] | list[Any]) -> dict[str, Any] | list[Any]:
    return {} if isinstance(value, dict) else []
