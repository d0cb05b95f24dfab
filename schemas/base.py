"""The base class every extraction schema derives from.

A schema is a Pydantic model with a name and a version. Its `Field(description=...)` texts are the
source of the prompt, its JSON Schema (made strict by `grammar_schema`) is the decoding
constraint, `merge` joins partial records from tiles and pages, and `review_reasons` holds the
business rules that turn a valid record into `needs_review`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict


class ExtractionSchema(BaseModel):
    """Base of all schemas. Subclasses set `schema_name`, `schema_version` and `summary`."""

    model_config = ConfigDict(extra="forbid")

    schema_name: ClassVar[str]
    schema_version: ClassVar[str]
    summary: ClassVar[str] = ""
    # Fields whose absence makes the record needs_review (a reason names each missing one).
    required_fields: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def grammar_schema(cls) -> dict[str, Any]:
        """The JSON Schema the decoder is constrained to.

        Every property is required (optional ones allow null), so the model writes every key
        and its output has one shape; no additional properties are allowed.
        """
        return strict_json_schema(cls.model_json_schema())

    @classmethod
    def merge(cls, partials: Sequence[Self]) -> Self:
        """Join partial records (tiles of a page, pages of a document) into one, in order.

        Scalars: the first non-null value wins. Nested models merge field by field. Lists are
        concatenated; an item repeated across the boundary of two consecutive partials (the
        overlap of two tiles, or a row repeated at the top of the next page) is kept once.
        """
        if not partials:
            raise ValueError(f"nothing to merge for schema {cls.schema_name!r}")
        merged = _merge_values([p.model_dump(mode="python") for p in partials])
        return cls.model_validate(merged)

    def review_reasons(self) -> list[str]:
        """Readable reasons why this valid record still needs a human look (empty: none)."""
        return [
            f"required field {name!r} is missing"
            for name in self.required_fields
            if getattr(self, name) in (None, [], "")
        ]


def _merge_values(values: list[Any]) -> Any:
    present = [v for v in values if v not in (None, "")]
    if not present:
        return values[0] if values else None
    if all(isinstance(v, dict) for v in present):
        keys = list(dict.fromkeys(k for v in present for k in v))
        return {k: _merge_values([v.get(k) for v in present]) for k in keys}
    if all(isinstance(v, list) for v in present):
        return _concat_without_boundary_repeats(present)
    return present[0]


def _concat_without_boundary_repeats(lists: list[list[Any]]) -> list[Any]:
    merged: list[Any] = []
    for items in lists:
        skip = _longest_overlap(merged, items)
        merged.extend(items[skip:])
    return merged


def _longest_overlap(head: list[Any], tail: list[Any]) -> int:
    """Length of the longest suffix of `head` that equals a prefix of `tail`."""
    for size in range(min(len(head), len(tail)), 0, -1):
        if head[-size:] == tail[:size]:
            return size
    return 0


def strict_json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Copy of `schema` where every object requires all its properties and allows no others."""
    schema = copy.deepcopy(schema)

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                node["required"] = list(node["properties"])
                node["additionalProperties"] = False
            node.pop("default", None)
            node.pop("title", None)
            for key, value in node.items():
                if key in ("properties", "$defs"):  # maps of names: visit values, never keys
                    for sub in value.values():
                        visit(sub)
                else:
                    visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(schema)
    return schema
