"""`--schema auto` through the runner with the scripted backend: route once, extract with the
chosen schema, reuse the decision on the next run, record failures under `auto`."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageDraw
from sqlalchemy import select

from pipeline.backends.scripted import ScriptedModel, create, empty_record_json
from pipeline.errors import ModelError
from pipeline.routing import ROUTE_KEY
from pipeline.runner import process, register
from pipeline.settings import Settings
from pipeline.store.db import open_database, session_factory
from pipeline.store.models import Extraction
from pipeline.types import VisionRequest


def is_routing(request: VisionRequest) -> bool:
    return ROUTE_KEY in (request.json_schema or {}).get("properties", {})


def routes_to(name: str):  # type: ignore[no-untyped-def]
    def script(request: VisionRequest, number: int) -> object:
        if is_routing(request):
            return json.dumps({ROUTE_KEY: name})
        return empty_record_json(request.json_schema)

    return script


def run(tmp_path: Path, settings: Settings, model: ScriptedModel) -> list[dict[str, object]]:
    path = tmp_path / "doc.png"
    if not path.exists():
        image = Image.new("RGB", (600, 800), "white")  # a white sheet alone would be blank
        ImageDraw.Draw(image).text((40, 40), "INVOICE 2024-5847 ACME GmbH", fill="black")
        image.save(path)
    factory = session_factory(open_database(settings.db_url.get_secret_value()))
    return [
        o.to_json()
        for o in process(factory, register(factory, path, settings), settings, model=model)
    ]


def extractions(settings: Settings) -> list[Extraction]:
    factory = session_factory(open_database(settings.db_url.get_secret_value()))
    with factory() as session:
        return list(session.scalars(select(Extraction)))


def test_auto_routes_once_and_extracts_the_chosen_schema(
    tmp_path: Path, settings: Settings
) -> None:
    settings.schemas = ["auto"]
    model = ScriptedModel(routes_to("form"))
    rows = run(tmp_path, settings, model)
    assert [(r["schema"], r["did_work"]) for r in rows] == [("form", True)]
    (stored,) = extractions(settings)
    assert stored.schema_name == "form" and stored.provenance["route"]["schema"] == "form"
    routing_requests = sum(1 for r in model.requests if is_routing(r))
    assert routing_requests == 1

    again = run(tmp_path, settings, model)  # the stored decision is reused: no new request
    assert [(r["schema"], r["did_work"]) for r in again] == [("form", False)]
    assert sum(1 for r in model.requests if is_routing(r)) == routing_requests


def test_the_scripted_dry_run_backend_routes_to_the_first_candidate(
    tmp_path: Path, settings: Settings
) -> None:
    """`docextract run INBOX --backend scripted` (no --schema: auto) routes and extracts."""
    settings.schemas = ["auto"]
    first = settings.routing.candidates[0]
    rows = run(tmp_path, settings, create(settings))
    assert [(r["schema"], r["status"]) for r in rows] == [(first, "needs_review")]  # empty record
    (stored,) = extractions(settings)
    assert stored.provenance["route"]["schema"] == first


def test_auto_next_to_a_named_schema_gives_both(tmp_path: Path, settings: Settings) -> None:
    settings.schemas = ["auto", "table"]
    rows = run(tmp_path, settings, ScriptedModel(routes_to("invoice")))
    assert sorted(r["schema"] for r in rows) == ["invoice", "table"]


def test_a_routing_model_failure_is_recorded_under_auto(tmp_path: Path, settings: Settings) -> None:
    settings.schemas = ["auto"]

    def broken(request: VisionRequest, number: int) -> object:
        return ModelError("CUDA error: unspecified launch failure")

    rows = run(tmp_path, settings, ScriptedModel(broken))  # type: ignore[arg-type]
    assert [(r["schema"], r["status"]) for r in rows] == [("auto", "failed")]
    (stored,) = extractions(settings)
    assert stored.schema_name == "auto" and stored.error_category == "model_error"


def test_an_unreadable_file_with_auto_still_gets_a_status(
    tmp_path: Path, settings: Settings
) -> None:
    settings.schemas = ["auto"]
    path = tmp_path / "notes.pdf"
    path.write_text("<html>not a pdf</html>")
    factory = session_factory(open_database(settings.db_url.get_secret_value()))
    rows = process(
        factory,
        register(factory, path, settings),
        settings,
        model=ScriptedModel(routes_to("invoice")),
    )
    assert [(r.schema, r.status) for r in rows] == [("auto", "failed")]
    (stored,) = extractions(settings)
    assert stored.error_category == "not_a_document"
