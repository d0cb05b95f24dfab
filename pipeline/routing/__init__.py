"""Routing: which schema a document gets under `--schema auto`.

- `classify`: the one constrained classification request and reading its answer (`route`).
- `plan`: in a run, the schemas of a document (routing once per model, reusing a stored decision).
"""

from pipeline.routing.classify import (
    AUTO,
    ROUTE_KEY,
    ROUTING_PROMPT_VERSION,
    Route,
    route,
    whole_page_image,
)

__all__ = ["AUTO", "ROUTE_KEY", "ROUTING_PROMPT_VERSION", "Route", "route", "whole_page_image"]
