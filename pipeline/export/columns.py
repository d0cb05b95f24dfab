"""The shape of a schema's records, from its JSON Schema: fixed export columns and types.

Exports take their columns from the schema, not from the data, so that every export of a schema
has the same columns (a field that is null in every row still gets its column) and the same
Parquet types. A value that is not one JSON type (a union) is written as JSON text. Amounts
(any `Decimal` field) and dates (`date` fields) are strings in the JSON Schema and in stored
records; `schema_shape` reads them from the field annotations, so Parquet gets decimal and date
columns.
"""

from __future__ import annotations

import datetime
import decimal
import json
import types
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from schemas.types import Places

Kind = Literal[
    "object", "array", "string", "integer", "number", "boolean", "json", "decimal", "date"
]
_SCALARS = ("string", "integer", "number", "boolean")
_MAX_DEPTH = 8  # recursive schemas stop here and become JSON text
# Scale of a Decimal field that says nothing of its places: a custom schema's number grammar
# (`schemas.custom.NUMBER_AS_STRING`) allows 6 decimals.
DEFAULT_PLACES = 6
DECIMAL_PRECISION = 38  # decimal128's most digits


@dataclass(frozen=True)
class Shape:
    """A node of a record: an object's fields (in schema order), an array's item, or a leaf;
    `places` is a `decimal` leaf's scale."""

    kind: Kind
    fields: dict[str, Shape] = field(default_factory=dict)
    item: Shape | None = None
    places: int = 0


def schema_shape(model: type[BaseModel]) -> Shape:
    """The shape of `model`'s records: `record_shape` of its serialization JSON Schema, with
    its `Decimal` leaves as `decimal` and its `date` leaves as `date`."""
    return _typed(record_shape(model.model_json_schema(mode="serialization")), model, [])


def _typed(shape: Shape, annotation: Any, metadata: list[Any]) -> Shape:
    """`shape` with the leaves whose annotation is Decimal or date retyped."""
    base, metadata = _unwrapped(annotation, metadata)
    if shape.kind == "object" and isinstance(base, type) and issubclass(base, BaseModel):
        by_key = {
            info.serialization_alias or info.alias or name: info
            for name, info in base.model_fields.items()
        }
        fields = {
            key: _typed(child, by_key[key].annotation, list(by_key[key].metadata))
            if key in by_key
            else child
            for key, child in shape.fields.items()
        }
        return replace(shape, fields=fields)
    if shape.kind == "array" and shape.item is not None and get_origin(base) in (list, tuple):
        (item, *_) = get_args(base) or (Any,)
        return replace(shape, item=_typed(shape.item, item, []))
    if shape.kind == "string" and base is decimal.Decimal:
        places = [m.count for m in metadata if isinstance(m, Places)]
        places += [m.decimal_places for m in metadata if getattr(m, "decimal_places", None)]
        return Shape("decimal", places=places[0] if places else DEFAULT_PLACES)
    if shape.kind == "string" and base is datetime.date:  # not datetime, a subclass
        return Shape("date")
    return shape


def _unwrapped(annotation: Any, metadata: list[Any]) -> tuple[Any, list[Any]]:
    """`annotation` without `Annotated` (its metadata added to `metadata`) and without `| None`."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation, *extra = get_args(annotation)
            metadata = [*metadata, *extra]
        elif origin in (Union, types.UnionType):
            options = [a for a in get_args(annotation) if a is not type(None)]
            if len(options) != 1:
                return annotation, metadata
            annotation = options[0]
        else:
            return annotation, metadata


def record_shape(json_schema: dict[str, Any]) -> Shape:
    """The shape of records valid against `json_schema` (Pydantic's, with `$defs`)."""
    return _shape(json_schema, json_schema.get("$defs", {}), 0)


def _shape(node: dict[str, Any], defs: dict[str, Any], depth: int) -> Shape:
    if depth > _MAX_DEPTH:
        return Shape("json")
    if "$ref" in node:
        return _shape(defs[node["$ref"].rsplit("/", 1)[-1]], defs, depth + 1)
    options = [o for o in node.get("anyOf", node.get("oneOf", [])) if o.get("type") != "null"]
    if options:
        return _shape(options[0], defs, depth + 1) if len(options) == 1 else Shape("json")
    kind = node.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        kind = kinds[0] if len(kinds) == 1 else None
    if kind == "object" and "properties" in node:
        return Shape(
            "object", {k: _shape(v, defs, depth + 1) for k, v in node["properties"].items()}
        )
    if kind == "array":
        return Shape("array", item=_shape(node.get("items", {}), defs, depth + 1))
    return Shape(kind) if kind in _SCALARS else Shape("json")


def leaf_columns(shape: Shape, prefix: str = "") -> list[str]:
    """Dotted paths of the leaves outside arrays (an array inside is one JSON-text column when
    `prefix` is inside a list item, else it is left to `array_paths`)."""
    columns: list[str] = []
    for name, child in shape.fields.items():
        path = f"{prefix}{name}"
        if child.kind == "object":
            columns.extend(leaf_columns(child, f"{path}."))
        elif child.kind != "array":
            columns.append(path)
    return columns


def array_paths(shape: Shape, prefix: str = "") -> dict[str, Shape]:
    """Each array outside arrays, by dotted path, with its item shape."""
    found: dict[str, Shape] = {}
    for name, child in shape.fields.items():
        path = f"{prefix}{name}"
        if child.kind == "object":
            found.update(array_paths(child, f"{path}."))
        elif child.kind == "array" and child.item is not None:
            found[path] = child.item
    return found


def item_columns(item: Shape) -> list[str]:
    """Columns of one list item: its leaves (nested arrays as JSON text), or `value`."""
    if item.kind != "object":
        return ["value"]
    columns: list[str] = []
    for name, child in item.fields.items():
        if child.kind == "object":
            columns.extend(f"{name}.{c}" for c in item_columns(child))
        else:
            columns.append(name)
    return columns


def lookup(value: Any, path: str) -> Any:
    """The value at a dotted `path` in nested dicts; None where any step is missing or null."""
    for key in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def item_row(item: Any, columns: list[str]) -> dict[str, Any]:
    """One list item as {column: value} for `item_columns`; containers become JSON text."""
    values = {"value": item} if columns == ["value"] else {c: lookup(item, c) for c in columns}
    return {c: _text_if_container(v) for c, v in values.items()}


def _text_if_container(value: Any) -> Any:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, list | dict) else value


def conform(value: Any, shape: Shape) -> Any:
    """`value` reshaped to `shape` for Parquet: missing fields None, `json` leaves as text."""
    if value is None:
        return None
    if shape.kind == "object":
        source = value if isinstance(value, dict) else {}
        return {k: conform(source.get(k), child) for k, child in shape.fields.items()}
    if shape.kind == "array":
        assert shape.item is not None
        return [conform(v, shape.item) for v in value] if isinstance(value, list) else None
    if shape.kind == "json":
        return json.dumps(value, ensure_ascii=False)
    if shape.kind == "decimal":
        # Stored as the schema prints it ("1450.00"); more places than the scale (only from a
        # backend that does not constrain decoding) are rounded half-even.
        with decimal.localcontext(prec=DECIMAL_PRECISION):
            return decimal.Decimal(str(value)).quantize(decimal.Decimal(1).scaleb(-shape.places))
    if shape.kind == "date":
        return datetime.date.fromisoformat(value) if isinstance(value, str) else value
    return value


def arrow_type(shape: Shape) -> Any:
    """The pyarrow type of `shape` (pyarrow imported by the caller)."""
    import pyarrow as pa

    if shape.kind == "object":
        return pa.struct([pa.field(k, arrow_type(v)) for k, v in shape.fields.items()])
    if shape.kind == "array":
        assert shape.item is not None
        return pa.list_(arrow_type(shape.item))
    if shape.kind == "decimal":
        return pa.decimal128(DECIMAL_PRECISION, shape.places)
    return {
        "date": pa.date32(),
        "string": pa.string(),
        "integer": pa.int64(),
        "number": pa.float64(),
        "boolean": pa.bool_(),
    }.get(shape.kind, pa.string())


# -- evidence: each value's confidence, page and box (the `field_confidence` of `vouch`) ------

EVIDENCE_KEYS = ("confidence", "page", "box")


def with_evidence(columns: list[str]) -> list[str]:
    """Each value column followed by its `<column>.confidence`, `.page` and `.box`."""
    return [name for c in columns for name in (c, *(f"{c}.{k}" for k in EVIDENCE_KEYS))]


def evidence_cells(
    evidence: dict[str, Any] | None, columns: list[str], prefix: str = "", named: str = ""
) -> dict[str, Any]:
    """`{<named><column>.confidence: 0.95, .page: 1, .box: "x0 y0 x1 y1"}` for each value
    column, from the evidence of record path `prefix + column` (`total`, `line_items[2].` +
    `amount`; a list of scalars' `value` column is the item itself); empty where there is none."""
    cells: dict[str, Any] = {}
    for column in columns:
        path = f"{prefix}{column}" if column != "value" else prefix.rstrip(".")
        found = (evidence or {}).get(path) or {}
        box = found.get("box")
        cells[f"{named}{column}.confidence"] = found.get("confidence")
        cells[f"{named}{column}.page"] = found.get("page")
        cells[f"{named}{column}.box"] = " ".join(str(v) for v in box) if box else None
    return cells


EVIDENCE_SHAPE = Shape(
    "array",
    item=Shape(
        "object",
        {
            "path": Shape("string"),
            "confidence": Shape("number"),
            "page": Shape("integer"),
            "box": Shape("array", item=Shape("integer")),
            "match": Shape("string"),
            "matched_text": Shape("string"),
            "reasons": Shape("array", item=Shape("string")),
        },
    ),
)


def evidence_list(evidence: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The evidence as a list of `{path, confidence, page, box, match, matched_text, reasons}`
    (Parquet: a typed column whatever paths a record has)."""
    return [{"path": path, **entry} for path, entry in (evidence or {}).items()]
