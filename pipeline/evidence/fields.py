"""Leaf values of a record, what kind of value each one is, and which must be grounded.

Paths are dotted with list indices: `seller.name`, `line_items[2].amount`, `rows[3][1]`; the
generic path drops the indices: `line_items[].amount`.

Kinds: `amount` (any number: money, quantity, percent, chart value), `date`, `identifier`
(invoice number, IBAN, VAT id, PO number: compared as letters and digits, never fuzzily),
`currency` (ISO code, matched by code or symbol), `text`, and `skip` (booleans, enums: not
printed as such, never grounded). A schema's JSON Schema decides (patterns of `schemas.types`,
enums, booleans), then the field name (`identifier_name`); without a schema, the value's shape.

Which fields must be grounded (not on the page -> needs_review) is declared per field:
`Field(..., json_schema_extra={"grounded": True})` opts a field in, `{"grounded": False}` out;
a list field's setting covers its items. Without a declaration: money amounts (the `Money`
pattern), dates and identifiers must be grounded; text, quantities, percents and currency not.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Callable, Iterator
from typing import Any, Literal

from pydantic import BaseModel

from schemas.types import (
    AMOUNT_PATTERN,
    CURRENCY_PATTERN,
    DATE_PATTERN,
    IBAN_PATTERN,
    NUMBER_PATTERN,
    PERCENT_PATTERN,
    QUANTITY_PATTERN,
)

Kind = Literal["amount", "date", "identifier", "currency", "text", "skip"]
KindOf = Callable[[str, Any], Kind]

_INDEX = re.compile(r"\[\d+\]")
_IDENTIFIER_NAME = re.compile(
    r"(?:^|_)(?:number|no|nr|id|iban|bic|swift|vat|vat_id|tax_id|po|purchase_order|reference|ref)$"
)
_NUMERIC_VALUE = re.compile(r"-?\d+(?:\.\d+)?")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_PATTERN_KINDS: dict[str, Kind] = {
    AMOUNT_PATTERN: "amount",
    QUANTITY_PATTERN: "amount",
    PERCENT_PATTERN: "amount",
    NUMBER_PATTERN: "amount",
    DATE_PATTERN: "date",
    IBAN_PATTERN: "identifier",
    CURRENCY_PATTERN: "currency",
}


def generic(path: str) -> str:
    """`line_items[2].amount` -> `line_items[].amount`."""
    return _INDEX.sub("[]", path)


def leaves(record: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(path, value) of every non-null scalar of a JSON-like record, in document order."""
    if isinstance(record, dict):
        for key, value in record.items():
            yield from leaves(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(record, list):
        for index, value in enumerate(record):
            yield from leaves(value, f"{prefix}[{index}]")
    elif record is not None:
        yield prefix, record


def identifier_name(path: str) -> bool:
    """True for a field named like an identifier: `invoice_number`, `seller.tax_id`, `iban`."""
    name = generic(path).rsplit(".", 1)[-1].replace("[]", "")
    return bool(_IDENTIFIER_NAME.search(name.lower()))


def kind_by_shape(path: str, value: Any) -> Kind:
    """The kind of a leaf from its value and name alone (no schema)."""
    if isinstance(value, bool):
        return "skip"
    if isinstance(value, int | float) or (
        isinstance(value, str) and _NUMERIC_VALUE.fullmatch(value) and not identifier_name(path)
    ):
        return "amount"
    if isinstance(value, str) and _ISO_DATE.fullmatch(value):
        return "date"
    if identifier_name(path):
        return "identifier"
    return "text"


def schema_kinds(schema_cls: type[BaseModel]) -> dict[str, Kind]:
    """Generic path -> kind for every leaf the schema's JSON Schema declares."""
    return {path: _leaf_kind(node, path) for path, node in _schema_leaves(schema_cls).items()}


def _schema_leaves(schema_cls: type[BaseModel]) -> dict[str, dict[str, Any]]:
    """Generic path -> JSON Schema node of every leaf."""
    root = schema_cls.model_json_schema()
    defs = root.get("$defs", {})
    found: dict[str, dict[str, Any]] = {}

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            node = defs[node["$ref"].rsplit("/", 1)[-1]]
        options = [o for o in node.get("anyOf", []) if o.get("type") != "null"]
        return resolve(options[0]) if len(options) == 1 else node

    def walk(node: dict[str, Any], path: str) -> None:
        node = resolve(node)
        if "properties" in node:
            for key, child in node["properties"].items():
                walk(child, f"{path}.{key}" if path else key)
        elif node.get("type") == "array" and isinstance(node.get("items"), dict):
            walk(node["items"], f"{path}[]")
        elif path:
            found[path] = node

    walk(root, "")
    return found


def _leaf_kind(node: dict[str, Any], path: str) -> Kind:
    if "enum" in node or "const" in node or node.get("type") == "boolean":
        return "skip"
    if node.get("pattern") in _PATTERN_KINDS:
        return _PATTERN_KINDS[node["pattern"]]
    if node.get("type") in ("number", "integer"):
        return "amount"
    if node.get("format") == "date":
        return "date"
    return "identifier" if identifier_name(path) else "text"


def kind_function(schema_cls: type[BaseModel] | None = None) -> KindOf:
    """`kind(path, value)`: from the schema where it declares the path, else by shape. A leaf
    the schema calls text but whose value is an ISO date or a number (a form field's `value`)
    is graded by its shape."""
    declared = schema_kinds(schema_cls) if schema_cls is not None else {}

    def kind(path: str, value: Any) -> Kind:
        found = declared.get(generic(path))
        if found is None or (found == "text" and kind_by_shape(path, value) in ("amount", "date")):
            return kind_by_shape(path, value)
        return found

    return kind


def must_be_grounded(schema_cls: type[BaseModel], path: str) -> bool:
    """Whether a leaf must be printed on the document (else the record needs review).

    Reads `json_schema_extra={"grounded": bool}` on the field (or the list field holding it),
    deepest declaration first; else the default rule of the module docstring.
    """
    declared = _declared(schema_cls, generic(path).replace("[]", "").split("."))
    if declared is not None:
        return declared
    node = _schema_leaves(schema_cls).get(generic(path))
    if node is None:
        return False
    kind = _leaf_kind(node, generic(path))
    return kind in ("date", "identifier") or node.get("pattern") == AMOUNT_PATTERN


def _fields_along(model: Any, names: list[str]) -> Iterator[Any]:
    for name in names:
        fields = getattr(model, "model_fields", None)
        if not fields or name not in fields:
            return
        info = fields[name]
        yield info
        model = _model_in(info.annotation)


def _model_in(annotation: Any) -> Any:
    """The BaseModel class inside `X | None`, `list[X]`, `Annotated[...]`, else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _declared(schema_cls: type[BaseModel], names: list[str]) -> bool | None:
    result = None
    for info in _fields_along(schema_cls, names):
        extra = info.json_schema_extra
        if isinstance(extra, dict) and isinstance(extra.get("grounded"), bool):
            result = bool(extra["grounded"])
    return result
