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

from schemas.merge import Box, merge_pages, merge_tiles, reading_rows


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
        """Join partial records (pages of a document; tiles in reading order) into one, in order.

        Scalars: the first non-null value wins. Nested models merge field by field. Lists are
        concatenated; an item repeated across the boundary of two consecutive partials (a row
        repeated at the top of the next page) is kept once. Raises ValueError for no partials.
        """
        if not partials:
            raise ValueError(f"nothing to merge for schema {cls.schema_name!r}")
        return cls.model_validate(merge_pages([p.model_dump(mode="python") for p in partials]))

    @classmethod
    def merge_tiles(cls, partials: Sequence[Self], boxes: Sequence[Box | None]) -> Self:
        """Join the partial records of one page's tiles, using each tile's box (page pixels,
        `(left, top, right, bottom)`; None for the page's global view).

        A value seen in two overlapping tiles is kept once (the value most tiles agree on);
        list items (line items, table rows) split across tiles are joined, and those seen in the
        overlap of two tiles kept once; the global view only fills what the tiles left empty
        (rules in `schemas.merge`). A schema that overrides `merge` but not this method gets
        its partials in reading order, the global view last, through its own `merge`.
        Raises ValueError for no partials, or a box count that differs from theirs.
        """
        if not partials:
            raise ValueError(f"nothing to merge for schema {cls.schema_name!r}")
        if len(partials) != len(boxes):
            raise ValueError(f"{len(partials)} partials but {len(boxes)} boxes: give one box each")
        if cls.merge.__func__ is not ExtractionSchema.merge.__func__:  # type: ignore[attr-defined]
            boxed = [i for i, box in enumerate(boxes) if box is not None]
            order = [i for row in reading_rows([boxes[i] for i in boxed]) for i in row]  # type: ignore[misc]
            ordered = [partials[boxed[i]] for i in order]
            return cls.merge(
                ordered + [p for p, box in zip(partials, boxes, strict=True) if box is None]
            )
        values = [p.model_dump(mode="python") for p in partials]
        return cls.model_validate(merge_tiles(values, list(boxes)))

    def review_reasons(self) -> list[str]:
        """Readable reasons why this valid record still needs a human look (empty: none)."""
        return [
            f"required field {name!r} is missing"
            for name in self.required_fields
            if getattr(self, name) in (None, [], "")
        ]

    def rule_paths(self) -> list[str]:
        """Field paths (`total`, `line_items[2].amount`) that a failed business rule involves:
        per-field confidence lowers them. Default: none (a schema without cross-field rules)."""
        return []


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
