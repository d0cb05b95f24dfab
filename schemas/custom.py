"""Custom schemas: `--schema pkg.module:Model` (a Pydantic model) or `--schema path/to/x.json`.

Either becomes an ExtractionSchema subclass that the whole pipeline uses like a built-in:
- its name is the reference (`pkg.module:Model`) or, for a JSON Schema, its `title` or file stem;
- its version is the model's `schema_version`, the JSON Schema's `version`, or else a hash of
  its JSON Schema, so that editing a custom schema makes new extractions instead of mixing them;
- its grammar gets the bounds it lacks (string maxLength, array maxItems, number digits), so that
  even a weak model ends its answer inside the token budget.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import json
import keyword
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model

from schemas.base import ExtractionSchema, strict_json_schema
from schemas.errors import ConfigError
from schemas.types import DATE_PATTERN, IsoDate

# Bounds given to a custom schema's grammar where it sets none.
DEFAULT_MAX_LENGTH = 200
DEFAULT_MAX_ITEMS = 50
# An unbounded JSON number lets a model write digits until the budget ends; in the grammar a
# number is a string of at most 15 digits and 6 decimals, which Pydantic reads back as a number.
NUMBER_AS_STRING = {"type": "string", "pattern": r"^-?[0-9]{1,15}(\.[0-9]{1,6})?$", "maxLength": 23}
INTEGER_BOUND = 10**15
# Formats become patterns (what Pydantic reads back), so the grammar needs no format support.
FORMAT_PATTERNS: dict[str, dict[str, Any]] = {
    "date": {"pattern": DATE_PATTERN, "maxLength": 10},
    "date-time": {
        "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?"
        r"(Z|[+-][0-9]{2}:[0-9]{2})?$",
        "maxLength": 32,
    },
    "time": {
        "pattern": r"^[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?(Z|[+-][0-9]{2}:[0-9]{2})?$",
        "maxLength": 21,
    },
}
# A dict field: keys as bounded as string values, and as many keys as a list has items.
DICT_KEY_PATTERN = rf"^.{{1,{DEFAULT_MAX_LENGTH // 4}}}$"
RESERVED = frozenset({"schema_name", "schema_version", "summary", "required_fields"})


def is_custom_reference(name: str) -> bool:
    """True for `module:Model` and `*.json` references (built-in names have neither)."""
    return name.endswith(".json") or ":" in name


def load_custom_schema(reference: str) -> type[ExtractionSchema]:
    """The schema a `--schema` reference points at. Raises ConfigError saying what to fix."""
    if reference.endswith(".json"):
        return schema_from_json_file(Path(reference))
    if ":" in reference:
        return schema_from_model(reference)
    raise ConfigError(
        f"{reference!r} is not a custom schema reference: use 'package.module:Model' or a "
        "path to a JSON Schema file ending in .json."
    )


def schema_from_model(reference: str) -> type[ExtractionSchema]:
    """Import `module:Model` and wrap it as an ExtractionSchema named `reference`."""
    module_name, _, attr = reference.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"Cannot import {module_name!r} for schema {reference!r}: {exc}. Install the package "
            "or add its folder to PYTHONPATH."
        ) from None
    except Exception as exc:  # the user's module is not ours to trust: anything may go wrong
        raise ConfigError(
            f"Importing {module_name!r} for schema {reference!r} raised "
            f"{type(exc).__name__}: {exc}. Fix the module (`python -c 'import {module_name}'` "
            "shows the traceback)."
        ) from None
    model = getattr(module, attr, None)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise ConfigError(
            f"{reference!r} is not a Pydantic model class (found {type(model).__name__}); point "
            "--schema at a pydantic.BaseModel subclass."
        )
    own = issubclass(model, ExtractionSchema) and "schema_name" in _class_vars(model)
    name = model.schema_name if own else reference  # type: ignore[attr-defined]
    declared = getattr(model, "schema_version", None)
    summary = getattr(model, "summary", "") or _first_line(model.__doc__) or name
    return _wrap(model, name, declared, summary, _required_of(model))


def schema_from_json_file(path: Path) -> type[ExtractionSchema]:
    """Build an ExtractionSchema from a JSON Schema file (an object schema)."""
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"Schema file {str(path)!r} does not exist.") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"Cannot read JSON Schema {str(path)!r}: {exc}") from None
    if not isinstance(schema, dict) or schema.get("type") != "object":
        raise ConfigError(
            f"{str(path)!r} must hold a JSON Schema whose top level is "
            '{"type": "object", "properties": {...}}.'
        )
    name = _slug(schema.get("title") or path.stem)
    model = model_from_json_schema(schema, name, source=str(path))
    summary = schema.get("description") or name
    required = tuple(schema.get("required", ()))
    return _wrap(model, name, schema.get("version"), summary, required)


def _wrap(
    model: type[BaseModel],
    name: str,
    declared_version: Any,
    summary: str,
    required: tuple[str, ...],
) -> type[ExtractionSchema]:
    clash = sorted(RESERVED & set(model.model_fields))
    if clash:
        raise ConfigError(
            f"Schema {name!r} has fields named {clash}, which docextract reserves for schema "
            "metadata; rename them."
        )
    version = str(declared_version) if declared_version else _content_version(model)
    bases = (model,) if issubclass(model, ExtractionSchema) else (model, ExtractionSchema)
    namespace: dict[str, Any] = {
        "__module__": model.__module__,
        "__doc__": model.__doc__,
        "__annotations__": {
            "schema_name": ClassVar[str],
            "schema_version": ClassVar[str],
            "summary": ClassVar[str],
        },
        "schema_name": name,
        "schema_version": version,
        "summary": _first_line(summary) or name,
        "grammar_schema": classmethod(lambda cls: bounded_grammar(_declared_grammar(model, cls))),
    }
    if not issubclass(model, ExtractionSchema):
        namespace["required_fields"] = required
        namespace["__annotations__"]["required_fields"] = ClassVar[tuple[str, ...]]
    return type(model.__name__, bases, namespace)


def bounded_grammar(schema: dict[str, Any]) -> dict[str, Any]:
    """`strict_json_schema(schema)` with default bounds where the schema sets none."""
    schema = strict_json_schema(copy.deepcopy(schema))

    def visit(node: Any) -> Any:
        if isinstance(node, list):
            return [visit(n) for n in node]
        if not isinstance(node, dict):
            return node
        node = {k: (visit(v) if k not in ("enum", "const") else v) for k, v in node.items()}
        if "properties" in node:
            node["properties"] = {k: visit(v) for k, v in node["properties"].items()}
        for key in ("anyOf", "oneOf"):
            if key in node:
                node[key] = _numbers_not_any_text(node[key])
                if len(node[key]) == 1:  # `Decimal` alone: the number option is the node
                    node = {**{k: v for k, v in node.items() if k != key}, **node[key][0]}
        kind = node.get("type")
        form = node.get("format")
        if kind == "string" and form in FORMAT_PATTERNS and "pattern" not in node:
            node = {k: v for k, v in node.items() if k != "format"} | FORMAT_PATTERNS[form]
        if kind == "string" and not ({"enum", "const", "maxLength"} & node.keys()):
            node["maxLength"] = DEFAULT_MAX_LENGTH
        elif kind == "array" and "maxItems" not in node:
            node["maxItems"] = DEFAULT_MAX_ITEMS
        elif kind == "object" and isinstance(node.get("additionalProperties"), dict):
            values = node.pop("additionalProperties")  # dict[str, X]: any key, any number
            node["patternProperties"] = {DICT_KEY_PATTERN: values}
            node["additionalProperties"] = False
            node.setdefault("maxProperties", DEFAULT_MAX_ITEMS)
        elif kind == "integer":
            node.setdefault("minimum", -INTEGER_BOUND)
            node.setdefault("maximum", INTEGER_BOUND)
        elif kind == "number":
            description = node.get("description")
            node = dict(NUMBER_AS_STRING, **({"description": description} if description else {}))
        return node

    result: dict[str, Any] = visit(schema)
    return result


def _numbers_not_any_text(options: list[Any]) -> list[Any]:
    """The options of an anyOf without a free-text string beside a number: Pydantic describes
    `Decimal` as "a number or any string", and a free string lets decoding run away
    (`"total":"}3772..."`). The number (a bounded digit string here) stays."""
    number = any(
        isinstance(o, dict) and o.get("pattern") == NUMBER_AS_STRING["pattern"] for o in options
    )
    if not number:
        return options
    free = ("pattern", "enum", "const", "format")
    return [
        o
        for o in options
        if not (isinstance(o, dict) and o.get("type") == "string" and not (set(free) & o.keys()))
    ]


def _declared_grammar(model: type[BaseModel], wrapper: type[BaseModel]) -> dict[str, Any]:
    """The grammar the model's author gave: their own `grammar_schema`, or the JSON Schema."""
    if issubclass(model, ExtractionSchema):
        return model.grammar_schema()
    return wrapper.model_json_schema()


def _content_version(model: type[BaseModel]) -> str:
    canonical = json.dumps(model.model_json_schema(), sort_keys=True, separators=(",", ":"))
    return "h" + hashlib.sha256(canonical.encode()).hexdigest()[:10]


def _required_of(model: type[BaseModel]) -> tuple[str, ...]:
    if issubclass(model, ExtractionSchema):
        return model.required_fields
    return tuple(name for name, info in model.model_fields.items() if info.is_required())


def _class_vars(model: type) -> set[str]:
    """ClassVar names set by `model` or a base of it below ExtractionSchema."""
    names: set[str] = set()
    for klass in model.__mro__:
        if klass is ExtractionSchema:
            break
        names |= set(vars(klass))
    return names


def _first_line(text: str | None) -> str:
    return (text or "").strip().split("\n", 1)[0].strip().rstrip(".")


def _slug(text: str) -> str:
    slug = "".join(c if c.isalnum() or c in "-_" else "-" for c in text.strip().lower())
    return "-".join(part for part in slug.split("-") if part)[:64] or "custom"


# --- JSON Schema -> Pydantic model ---------------------------------------------------------------


def model_from_json_schema(schema: dict[str, Any], name: str, source: str) -> type[BaseModel]:
    """A Pydantic model for an object JSON Schema: every property optional (null when absent),
    arrays empty when absent; local `$ref`s, enums, nested objects and arrays supported.

    Raises ConfigError, naming `source` and the property, for what it cannot express.
    """
    defs = {**schema.get("definitions", {}), **schema.get("$defs", {})}
    return _object_model(schema, _class_name(name), defs, source, "")


def _object_model(
    node: dict[str, Any], class_name: str, defs: dict[str, Any], source: str, where: str
) -> type[BaseModel]:
    properties = node.get("properties")
    if not isinstance(properties, dict) or not properties:
        raise ConfigError(f"{source!r}: the object {where or 'at the top'} has no properties.")
    fields: dict[str, Any] = {}
    for key, sub in properties.items():
        path = f"{where}.{key}" if where else key
        annotation, is_list = _annotation(_resolve(sub, defs, source), defs, source, path)
        python_name = _python_name(key, fields)
        alias = key if python_name != key else None
        description = sub.get("description")
        if is_list:  # absent lists are empty, like the built-ins' line items
            fields[python_name] = (
                annotation,
                Field(default_factory=list, description=description, alias=alias),
            )
        else:
            fields[python_name] = (
                annotation | None,
                Field(None, description=description, alias=alias),
            )
    config = ConfigDict(extra="forbid", serialize_by_alias=True, validate_by_name=True)
    return create_model(class_name, __config__=config, **fields)


def _annotation(
    node: dict[str, Any], defs: dict[str, Any], source: str, path: str
) -> tuple[Any, bool]:
    """(Python type, whether it is a list) for one property's schema."""
    if "enum" in node or "const" in node:
        values = node.get("enum") or [node.get("const")]
        return Literal[tuple(v for v in values if v is not None)], False
    kind = node.get("type") or ("object" if "properties" in node else None)
    if kind == "string":
        if node.get("format") == "date":
            return IsoDate, False
        constraints = StringConstraints(
            strip_whitespace=True,
            max_length=node.get("maxLength"),
            pattern=node.get("pattern"),
        )
        return Annotated[str, constraints], False
    if kind in ("integer", "number", "boolean"):
        return {"integer": int, "number": float, "boolean": bool}[kind], False
    if kind == "array":
        item = _resolve(node.get("items") or {}, defs, source)
        inner, _ = _annotation(item, defs, source, path + "[]")
        items: Any = list[inner]  # type: ignore[valid-type]  # built at run time
        return Annotated[items, Field(max_length=node.get("maxItems"))], True
    if kind == "object":
        return _object_model(node, _class_name(path), defs, source, path), False
    raise ConfigError(
        f"{source!r}: property {path!r} has a type docextract cannot extract ({kind!r}); use "
        "string, number, integer, boolean, array, object or enum (optionally with null)."
    )


def _resolve(node: Any, defs: dict[str, Any], source: str) -> dict[str, Any]:
    """Follow a local `$ref` and unwrap `X | null` (anyOf/oneOf or a type list)."""
    if not isinstance(node, dict):
        raise ConfigError(f"{source!r}: expected a schema object, found {node!r}.")
    if "$ref" in node:
        target = node["$ref"].rsplit("/", 1)[-1]
        if not node["$ref"].startswith("#/") or target not in defs:
            raise ConfigError(f"{source!r}: cannot resolve $ref {node['$ref']!r} (local only).")
        return _resolve(
            {**defs[target], **{k: v for k, v in node.items() if k != "$ref"}}, defs, source
        )
    for key in ("anyOf", "oneOf"):
        if key in node:
            options = [o for o in node[key] if o.get("type") != "null"]
            if len(options) != 1:
                raise ConfigError(
                    f"{source!r}: {key} with several non-null options is not supported."
                )
            rest = {k: v for k, v in node.items() if k != key}
            return _resolve({**rest, **options[0]}, defs, source)
    if isinstance(node.get("type"), list):
        types = [t for t in node["type"] if t != "null"]
        if len(types) != 1:
            raise ConfigError(f"{source!r}: a type list {node['type']!r} is not supported.")
        return {**node, "type": types[0]}
    return node


def _python_name(key: str, taken: dict[str, Any]) -> str:
    name = re.sub(r"\W", "_", key)
    if not name or name[0].isdigit() or name.startswith("_") or keyword.iskeyword(name):
        name = f"f_{name}"
    while name in taken:
        name += "_"
    return name


def _class_name(text: str) -> str:
    return (
        "".join(part.capitalize() for part in re.split(r"[^0-9A-Za-z]+", text) if part) or "Custom"
    )
