"""Prompt text, built from a schema's field descriptions. Versioned: a change here is a new
PROMPT_VERSION, so extractions made with the old text stay as history instead of being mixed up."""

from __future__ import annotations

import types
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from schemas.base import ExtractionSchema

# 2: tiles are told which part of which page they show (default tiling became `auto`).
PROMPT_VERSION = "2"

_RULES = (
    "Answer with one JSON object and nothing else. "
    "Write null for a value that is not visible in the image: never guess or invent. "
    "Copy amounts and numbers as printed, without currency symbols. Write dates as YYYY-MM-DD."
)


def tile_note(part: int, parts: int, page: int, *, is_global: bool = False) -> str:
    """What the image shows when a page is cut into tiles ('' when it is simply the page).

    `part` of `parts` (1-based) counts the page's tiles without its global view; `page` is the
    1-based page number.
    """
    if is_global:
        return (
            f"This image is the whole of page {page} at low resolution, for context: extract "
            "only what you can read with certainty."
        )
    if parts <= 1:
        return ""
    return (
        f"This image is part {part} of {parts} of page {page}, cut from the page at full "
        "resolution: extract only what is visible in it, and write null (or an empty list) for "
        "everything else. A table may continue in other parts: list only the rows shown here."
    )


def extraction_prompt(schema: type[ExtractionSchema], note: str = "") -> str:
    """The instruction for one image: what to extract, field by field, and the answer rules.
    `note` (from `tile_note`) says which part of a page the image is."""
    lines = [
        f"Read this document image and extract the {schema.schema_name} data "
        f"({schema.summary or schema.schema_name}) as JSON.",
    ]
    if note:
        lines.append(note)
    lines.append("The JSON object has these keys:")
    lines += _describe_fields(schema, indent="")
    lines.append(_RULES)
    return "\n".join(lines)


def reask_prompt(schema: type[ExtractionSchema], problem: str, note: str = "") -> str:
    """The instruction again (with the same `note`), with what was wrong with the previous
    answer."""
    return (
        f"{extraction_prompt(schema, note)}\n"
        f"Your previous answer was rejected: {problem}\n"
        "Answer again with corrected JSON."
    )


def _describe_fields(model: type[BaseModel], indent: str) -> list[str]:
    lines: list[str] = []
    for field_name, info in model.model_fields.items():
        name = info.alias or field_name  # the JSON key (custom schemas may alias, e.g. "paid-by")
        nested, is_list = _nested_model(info)
        text = (info.description or "").strip()
        if nested is None:
            lines.append(f"{indent}- {name}: {text}")
            continue
        kind = "a list of objects" if is_list else "an object"
        lines.append(f"{indent}- {name}: {text} ({kind} with keys:)")
        lines += _describe_fields(nested, indent + "  ")
    return lines


def _nested_model(info: FieldInfo) -> tuple[type[BaseModel] | None, bool]:
    """The BaseModel inside `X | None` or `list[X]`, and whether it is a list."""
    annotation: Any = info.annotation
    is_list = False
    for _ in range(3):
        origin = get_origin(annotation)
        if origin in (Union, types.UnionType):
            annotation = next((a for a in get_args(annotation) if a is not type(None)), None)
        elif origin is list:
            annotation, is_list = get_args(annotation)[0], True
        else:
            break
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, is_list
    return None, is_list
