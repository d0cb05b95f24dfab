"""A record laid out for the desk: its scalar fields (nested objects flattened to `seller.name`)
and its lists as editable tables, each value with its evidence (`field_confidence[path]`).

The layout follows the schema's grammar (its strict JSON Schema), so a field the model left
empty still gets an input, and custom schemas are laid out like the built-ins. Paths are
evidence keys: `total`, `seller.name`, `line_items[0].amount`, `rows[2][1]`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from schemas.base import ExtractionSchema


@dataclass(frozen=True)
class Evidence:
    """Where a value was found: `page` 1-based, `box` in pixels of that page's cached image."""

    confidence: float | None
    page: int | None
    box: tuple[float, float, float, float] | None
    match: str | None
    matched_text: str | None
    reasons: list[str]
    parts: dict[str, Any]

    @classmethod
    def of(cls, value: Any) -> Evidence | None:
        if isinstance(value, int | float):  # rows written before grounding: a bare confidence
            return cls(float(value), None, None, None, None, [], {})
        if not isinstance(value, dict):
            return None
        box = value.get("box")
        page = value.get("page")
        ok_box = isinstance(box, list | tuple) and len(box) == 4
        return cls(
            _number(value.get("confidence")),
            int(page) if isinstance(page, int) else None,
            tuple(float(v) for v in box) if ok_box else None,  # type: ignore[arg-type, union-attr]
            str(value["match"]) if value.get("match") is not None else None,
            str(value["matched_text"]) if value.get("matched_text") is not None else None,
            [str(r) for r in value.get("reasons") or []],
            dict(value.get("parts") or {}),
        )


@dataclass(frozen=True)
class Cell:
    """One editable value. kind: text, bool, enum or json (a nested structure edited as JSON)."""

    path: str  # evidence key
    key: str  # the JSON key (or index) inside its parent
    label: str
    kind: str
    text: str
    options: tuple[str, ...] = ()
    description: str = ""
    evidence: Evidence | None = None


@dataclass(frozen=True)
class Section:
    """A list of the record as a table. kind: objects (one column per item field), rows (a list
    of lists: cells by index), strings (one column)."""

    path: str  # the list's dotted path in the record, e.g. line_items
    label: str
    kind: str
    columns: list[Cell]  # header cells (kind and options of each column)
    rows: list[list[Cell]] = field(default_factory=list)
    description: str = ""


@dataclass(frozen=True)
class Layout:
    fields: list[Cell]
    sections: list[Section]

    def boxed(self) -> list[Cell]:
        """Every cell with a box on a page, in layout order."""
        cells = self.fields + [c for s in self.sections for row in s.rows for c in row]
        return [c for c in cells if c.evidence is not None and c.evidence.box is not None]


def layout(
    schema: type[ExtractionSchema], record: dict[str, Any] | None, evidence: dict[str, Any] | None
) -> Layout:
    """The fields and tables of `record` (None: an empty record) along `schema`."""
    root = schema.grammar_schema()
    out = Layout([], [])
    _walk(root, root, record or {}, "", "", evidence or {}, out)
    return out


def _walk(
    root: dict[str, Any],
    spec: dict[str, Any],
    value: Any,
    path: str,
    dotted: str,
    evidence: dict[str, Any],
    out: Layout,
) -> None:
    for key, sub in resolve(root, spec).get("properties", {}).items():
        sub = resolve(root, sub)
        where, dotted_key = (f"{path}.{key}", f"{dotted}.{key}") if path else (key, key)
        item = (value or {}).get(key)
        if sub.get("type") == "object":
            _walk(root, sub, item, where, dotted_key, evidence, out)
        elif sub.get("type") == "array":
            out.sections.append(_section(root, sub, item or [], where, dotted_key, evidence, value))
        else:
            out.fields.append(_cell(sub, item, where, key, _label(dotted_key), evidence))


def _section(
    root: dict[str, Any],
    spec: dict[str, Any],
    items: list[Any],
    path: str,
    dotted: str,
    evidence: dict[str, Any],
    parent: Any,
) -> Section:
    item_spec = resolve(root, spec.get("items", {}))
    description = spec.get("description", "")
    if item_spec.get("type") == "object":
        properties = {k: resolve(root, s) for k, s in item_spec.get("properties", {}).items()}
        columns = [_cell(s, None, "", k, _label(k), {}) for k, s in properties.items()]
        rows = [
            [
                _cell(
                    properties[k], (item or {}).get(k), f"{path}[{i}].{k}", k, _label(k), evidence
                )
                for k in properties
            ]
            for i, item in enumerate(items)
        ]
        return Section(dotted, _label(dotted), "objects", columns, rows, description)
    if item_spec.get("type") == "array":
        cell_spec = resolve(root, item_spec.get("items", {}))
        headers = (parent or {}).get("columns") if isinstance(parent, dict) else None
        width = max([len(r or []) for r in items] + [len(headers or []), 1])
        names = [
            str(h) if h else f"#{j + 1}" for j, h in enumerate((headers or []) + [None] * width)
        ]
        columns = [_cell(cell_spec, None, "", str(j), names[j], {}) for j in range(width)]
        rows = [
            [
                _cell(
                    cell_spec,
                    row[j] if j < len(row or []) else None,
                    f"{path}[{i}][{j}]",
                    str(j),
                    names[j],
                    evidence,
                )
                for j in range(width)
            ]
            for i, row in enumerate(items)
        ]
        return Section(dotted, _label(dotted), "rows", columns, rows, description)
    columns = [_cell(item_spec, None, "", "", "value", {})]
    rows = [
        [_cell(item_spec, v, f"{path}[{i}]", "", "value", evidence)] for i, v in enumerate(items)
    ]
    return Section(dotted, _label(dotted), "strings", columns, rows, description)


def _cell(
    spec: dict[str, Any], value: Any, path: str, key: str, label: str, evidence: dict[str, Any]
) -> Cell:
    kind: str = "text"
    options: tuple[str, ...] = ()
    types = spec.get("type")
    if spec.get("enum"):
        kind, options = "enum", tuple(str(o) for o in spec["enum"] if o is not None)
    elif types == "boolean":
        kind = "bool"
    elif types in ("object", "array"):
        kind = "json"
    if kind == "json":
        text = "" if value is None else json.dumps(value, ensure_ascii=False)
    elif kind == "bool":
        text = "" if value is None else ("true" if value else "false")
    else:
        text = "" if value is None else str(value)
    found = Evidence.of(evidence.get(path)) if path else None
    return Cell(path, key, label, kind, text, options, spec.get("description", ""), found)


def resolve(root: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """`spec` with `$ref` followed and a nullable `anyOf` reduced to its non-null branch."""
    while True:
        if "$ref" in spec:
            name = spec["$ref"].rsplit("/", 1)[-1]
            spec = {
                **root.get("$defs", {}).get(name, {}),
                **{k: v for k, v in spec.items() if k != "$ref"},
            }
            continue
        options = [o for o in spec.get("anyOf", []) if o.get("type") != "null"]
        if "anyOf" in spec and len(options) == 1:
            merged = {k: v for k, v in spec.items() if k != "anyOf"}
            spec = {**options[0], **merged}
            continue
        return spec


def _label(dotted: str) -> str:
    return dotted.replace("_", " ")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None
