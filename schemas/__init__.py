"""Extraction schemas and their registry, by name.

`get_schema` resolves a built-in name (`invoice`, `form`, `table`, `chart`), a custom
`package.module:Model`, or a path to a JSON Schema file; a custom schema is loaded once per
process (a JSON Schema file again when it changes) and is then also known by its own name.
"""

from __future__ import annotations

import threading
from pathlib import Path

from schemas.base import ExtractionSchema
from schemas.chart import Chart
from schemas.custom import is_custom_reference, load_custom_schema
from schemas.errors import ConfigError
from schemas.form import Form
from schemas.invoice import Invoice
from schemas.table import Table

BUILT_INS: tuple[type[ExtractionSchema], ...] = (Invoice, Form, Table, Chart)

_registry: dict[str, type[ExtractionSchema]] = {}
_custom: dict[tuple[str, int], type[ExtractionSchema]] = {}
_references: dict[str, str] = {}  # custom schema name -> the reference it was loaded from
_lock = threading.Lock()


def register_schema(schema: type[ExtractionSchema]) -> None:
    """Make `schema` available by its `schema_name` (built-ins register the same way).

    Raises ConfigError when another schema class already holds that name.
    """
    with _lock:
        known = _registry.get(schema.schema_name)
        if known is not None and known is not schema and known in BUILT_INS:
            raise ConfigError(
                f"Schema name {schema.schema_name!r} is taken by a built-in schema; give the "
                "custom schema another name (its title, or its schema_name)."
            )
        _registry[schema.schema_name] = schema


for _schema in BUILT_INS:
    register_schema(_schema)


def known_schemas() -> dict[str, type[ExtractionSchema]]:
    """Every registered schema by name, sorted: the built-ins and custom ones loaded so far."""
    with _lock:
        return dict(sorted(_registry.items()))


def get_schema(name: str) -> type[ExtractionSchema]:
    """The schema `name` refers to: a registered name, `module:Model`, or a `.json` file path.

    Raises ConfigError listing the known names (or saying what is wrong with a custom one).
    """
    with _lock:
        schema = _registry.get(name)
    if schema is not None:
        return schema
    if is_custom_reference(name):
        return _load_custom(name)
    raise ConfigError(
        f"Unknown schema {name!r}. Known schemas: {', '.join(known_schemas())}, and 'auto' "
        "(the model picks one per document); or give 'package.module:Model' or a JSON Schema "
        "file (*.json)."
    )


def forget_custom_schemas() -> None:
    """Drop every custom schema loaded or registered so far (tests; a long-lived process that
    must pick up changed modules). Built-ins stay."""
    with _lock:
        _custom.clear()
        _references.clear()
        for name in [n for n, s in _registry.items() if s not in BUILT_INS]:
            del _registry[name]


def _load_custom(reference: str) -> type[ExtractionSchema]:
    # A JSON Schema file is reloaded when it changes (mtime); a module is imported once anyway.
    path = Path(reference)
    stamp = path.stat().st_mtime_ns if reference.endswith(".json") and path.is_file() else 0
    key = (str(path.resolve()) if stamp else reference, stamp)
    with _lock:
        schema = _custom.get(key)
    if schema is None:
        schema = load_custom_schema(reference)
        register_schema(schema)
        with _lock:
            _custom[key] = schema
    with _lock:  # a JSON file by its absolute path: a rerun elsewhere still finds it
        _references[schema.schema_name] = str(path.resolve()) if stamp else reference
    return schema


def schema_reference(name: str) -> str | None:
    """The `--schema` reference the custom schema stored as `name` was loaded from in this
    process (an absolute path for a JSON file), so a later process can load it again; None
    for built-ins and schemas not loaded here."""
    with _lock:
        return _references.get(name)


def stored_name(name: str) -> str:
    """The name extractions of schema `name` are stored under: a JSON Schema file's title or
    stem (`receipt.json` -> `receipt`), a model's own `schema_name`, else `name` itself.
    Raises ConfigError for a JSON Schema file that cannot be read."""
    if not is_custom_reference(name):
        return name
    try:
        return get_schema(name).schema_name
    except ConfigError:
        if name.endswith(".json"):
            raise
        return name  # a module that cannot be imported here: its reference is its name


__all__ = [
    "BUILT_INS",
    "ExtractionSchema",
    "forget_custom_schemas",
    "get_schema",
    "is_custom_reference",
    "known_schemas",
    "register_schema",
    "schema_reference",
    "stored_name",
]
