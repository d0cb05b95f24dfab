"""`--schema auto` in a run: which schemas a document gets, routing it once per model.

A document's routing decision is stored in the provenance of the extraction it led to, so a
second run over the same inbox reuses it instead of asking the model again (no new work). When
a document cannot be routed (unreadable, model failure, an answer naming no schema), the failure
is recorded under the pseudo-schema `auto`, so the document still has a status.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from pipeline.backends import VisionModel
from pipeline.errors import InputError, ModelError
from pipeline.pages import all_blank_error
from pipeline.prompts import PROMPT_VERSION
from pipeline.render.raster import RasterResult
from pipeline.routing.classify import AUTO, ROUTING_PROMPT_VERSION, Route, route
from pipeline.settings import Settings
from pipeline.store.queries import stored_provenances
from pipeline.types import ErrorCategory, ErrorItem
from schemas import get_schema


@dataclass(frozen=True)
class SchemaPlan:
    """The schema names to extract (`auto` among them only to record `failure`)."""

    names: list[str]
    route: Route | None = None
    failure: ErrorItem | None = None


def unit_identity(name: str) -> tuple[str, str]:
    """(schema name, schema version) of a unit of work; `auto` is versioned by its prompt."""
    if name == AUTO:
        return AUTO, ROUTING_PROMPT_VERSION
    schema = get_schema(name)
    return schema.schema_name, schema.schema_version


def plan_schemas(
    factory: sessionmaker[Session],
    document_id: int,
    settings: Settings,
    model: VisionModel,
    pages: Callable[[], RasterResult],
    input_error: ErrorItem | None,
    document: str | None = None,
) -> SchemaPlan:
    """The schemas of this document: the named ones, plus the routed one for `auto`.

    `pages` renders the document (cached) only when routing must actually run; `document` (its
    path) travels with the routing request (`VisionRequest.document`).
    """
    names = [n for n in settings.schemas if n != AUTO]
    if AUTO not in settings.schemas:
        return SchemaPlan(names)
    chosen = previous_route(factory, document_id, model.model_id)
    if chosen is None:
        if input_error is not None:
            return SchemaPlan([*names, AUTO], failure=input_error)
        try:
            rendered = pages().pages
            if rendered and all(p.blank for p in rendered):
                return SchemaPlan([*names, AUTO], failure=all_blank_error(rendered))
            readable = [p for p in rendered if not p.blank]
            candidates = settings.routing.candidates
            chosen = route(readable, model, settings, candidates, document=document)
        except InputError as exc:
            return SchemaPlan([*names, AUTO], failure=ErrorItem(exc.category, exc.message))
        except ModelError as exc:
            return SchemaPlan(
                [*names, AUTO], failure=ErrorItem(ErrorCategory.MODEL_ERROR, str(exc))
            )
    if chosen.schema_name is None:
        problem = chosen.problem or "the answer named no schema"
        item = ErrorItem(ErrorCategory.INVALID_OUTPUT, f"could not route the document: {problem}")
        return SchemaPlan([*names, AUTO], route=chosen, failure=item)
    if chosen.schema_name not in names:
        names.append(chosen.schema_name)
    return SchemaPlan(names, route=chosen)


def previous_route(factory: sessionmaker[Session], document_id: int, model_id: str) -> Route | None:
    """The routing decision an earlier run made for this document with this model, if any."""
    with factory() as session:
        provenances = stored_provenances(session, document_id, model_id, PROMPT_VERSION)
    for provenance in provenances:
        stored = provenance.get("route")
        if (
            stored
            and stored.get("schema")
            and stored.get("prompt_version") == ROUTING_PROMPT_VERSION
        ):
            return Route(
                schema_name=stored["schema"],
                probability=stored.get("probability"),
                raw_text=stored.get("raw_text", ""),
                candidates=tuple(stored.get("candidates", ())),
            )
    return None


def route_review_reason(route: Route, settings: Settings) -> str | None:
    """A review reason when the routing choice was not confident enough."""
    if route.probability is None or route.probability >= settings.routing.min_probability:
        return None
    return (
        f"routed to {route.schema_name!r} with probability {route.probability:.2f} "
        f"(below {settings.routing.min_probability})"
    )
