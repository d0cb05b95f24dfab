"""Extraction schemas and their registry, by name."""

from __future__ import annotations

from pipeline.errors import ConfigError
from schemas.base import ExtractionSchema
from schemas.invoice import Invoice

_registry: dict[str, type[ExtractionSchema]] = {}


def register_schema(schema: type[ExtractionSchema]) -> None:
    """Make `schema` available by its `schema_name` (built-ins register the same way)."""
    _registry[schema.schema_name] = schema


register_schema(Invoice)


def known_schemas() -> dict[str, type[ExtractionSchema]]:
    return dict(sorted(_registry.items()))


def get_schema(name: str) -> type[ExtractionSchema]:
    """The schema registered as `name`. Raises ConfigError listing the known names."""
    try:
        return _registry[name]
    except KeyError:
        raise ConfigError(
            f"Unknown schema {name!r}. Known schemas: {', '.join(known_schemas())}."
        ) from None


__all__ = ["ExtractionSchema", "get_schema", "known_schemas", "register_schema"]
