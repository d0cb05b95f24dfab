"""Reruns in plain Python: which units a rerun redoes, and where each document's bytes are now.

A rerun redoes existing units of work in place: the configured model, prompt version and schema
version must be those of the unit, so that a successful rerun replaces the current result (the
history keeps the old one) and nothing is duplicated. Units made by another model, prompt or
schema version are listed as skipped with the reason, never silently redone as new units.

A document's file may have moved since it was seen. Its recorded paths are tried, most recently
seen first, and one is used only if its bytes still hash to the document's sha256. Failing
that, the page cache serves when it holds every page at the configured DPI; otherwise the units
are skipped with a message saying where the file was last seen, and keep their current result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from pipeline.backends import create_model
from pipeline.errors import ConfigError, InputError
from pipeline.ingest import IngestedFile, hash_file
from pipeline.prompts import PROMPT_VERSION
from pipeline.render.raster import cache_complete
from pipeline.runner import Registered, register
from pipeline.settings import Settings
from pipeline.store.bundles import document_name
from pipeline.store.models import Document, Extraction
from pipeline.store.queries import Selection, last_seen_paths, parse_when, select_extractions
from schemas import get_schema, is_custom_reference, known_schemas

DEFAULT_STATUSES = ("failed",)


def selection_from(
    statuses: list[str] | None,
    error_categories: list[str] | None,
    documents: list[str] | None,
    since: str | None,
    until: str | None,
    schema: str | None,
    model: str | None,
) -> Selection:
    """The Selection for the flow's (and the CLI's) filter parameters; statuses default to
    failed; a custom `schema` reference (`receipt.json`) selects the name it is stored under.
    Raises ConfigError for an unknown status, category or unreadable date."""
    from schemas import stored_name

    return Selection(
        statuses=tuple(statuses or DEFAULT_STATUSES),
        error_categories=tuple(error_categories or ()),
        documents=tuple(documents or ()),
        since=parse_when(since) if since else None,
        until=parse_when(until) if until else None,
        schema=stored_name(schema) if schema else None,
        model=model,
    )


def rerun_overrides(overrides: dict[str, Any] | None, model: str | None) -> dict[str, Any]:
    """Overrides with `model` as the model to run: the filter names the model that redoes it."""
    merged = dict(overrides or {})
    if model:
        merged["model"] = {**merged.get("model", {}), "name": model}
    return merged


@dataclass(frozen=True)
class Identity:
    """What the configured run produces: a unit with other values is not this run's to redo."""

    model_id: str
    prompt_version: str
    schema_versions: dict[str, str]


def configured_identity(
    settings: Settings, schema_names: Sequence[str], references: dict[str, str] | None = None
) -> Identity:
    """The model id (built, not loaded), prompt version and the named schemas' versions.

    A custom schema not loaded yet is loaded from its stored reference (`references`: name ->
    `module:Model` or JSON file); one that cannot be loaded is left out (its units are
    skipped). Raises ConfigError for an unknown backend or model name.
    """
    known = known_schemas()
    versions: dict[str, str] = {}
    for name in schema_names:
        reference = (references or {}).get(name) or (name if is_custom_reference(name) else None)
        if name not in known and reference:
            try:
                known[name] = get_schema(reference)
            except ConfigError:
                continue
        if name in known:
            versions[name] = known[name].schema_version
    return Identity(create_model(settings).model_id, PROMPT_VERSION, versions)


@dataclass(frozen=True)
class RerunUnit:
    """One selected extraction, as listed by a dry run."""

    extraction_id: int
    document_id: int
    sha256: str
    name: str
    schema_name: str
    schema_version: str
    model_id: str
    prompt_version: str
    status: str
    error_category: str | None
    reason: str | None
    updated_at: datetime
    schema_ref: str | None = None  # where a custom schema loads from (module:Model, a file)

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "updated_at": self.updated_at.isoformat()}


@dataclass(frozen=True)
class RerunPlan:
    """The units to redo and the selected units that this configuration cannot redo (why)."""

    units: list[RerunUnit] = field(default_factory=list)
    skipped: list[tuple[RerunUnit, str]] = field(default_factory=list)

    def by_document(self) -> dict[int, list[RerunUnit]]:
        """Units to redo grouped per document, in selection order."""
        groups: dict[int, list[RerunUnit]] = {}
        for unit in self.units:
            groups.setdefault(unit.document_id, []).append(unit)
        return groups

    def to_json(self) -> dict[str, Any]:
        return {
            "units": [u.to_json() for u in self.units],
            "skipped": [{**u.to_json(), "skip_reason": why} for u, why in self.skipped],
        }


def plan_rerun(session: Session, selection: Selection, settings: Settings) -> RerunPlan:
    """Select the extractions matching `selection` and split them into redoable and skipped."""
    rows = select_extractions(session, selection)
    references = {
        r.schema_name: ref for r in rows if (ref := (r.provenance or {}).get("schema_ref"))
    }
    identity = configured_identity(settings, sorted({row.schema_name for row in rows}), references)
    plan = RerunPlan()
    for row in rows:
        unit = _unit(row)
        why = _why_not(unit, identity)
        if why is None:
            plan.units.append(unit)
        else:
            plan.skipped.append((unit, why))
    return plan


def _unit(row: Extraction) -> RerunUnit:
    return RerunUnit(
        row.id,
        row.document_id,
        row.document.sha256,
        document_name(row.document),
        row.schema_name,
        row.schema_version,
        row.model_id,
        row.prompt_version,
        row.status,
        row.error_category,
        row.reason,
        row.updated_at,
        (row.provenance or {}).get("schema_ref"),
    )


def _why_not(unit: RerunUnit, identity: Identity) -> str | None:
    if unit.model_id != identity.model_id:
        return (
            f"made by model {unit.model_id!r}, the configured model is {identity.model_id!r}; "
            "pass the --model (and --backend) that made it, or set DOCEXTRACT_MODEL__NAME"
        )
    if unit.prompt_version != identity.prompt_version:
        return (
            f"made with prompt version {unit.prompt_version!r}, this docextract has "
            f"{identity.prompt_version!r}; `docextract run` on the file makes a new extraction"
        )
    current = identity.schema_versions.get(unit.schema_name)
    if current is None:
        where = f" from {unit.schema_ref!r}" if unit.schema_ref else ""
        return (
            f"schema {unit.schema_name!r} cannot be loaded here{where}; its module or file "
            "must be importable or readable where the rerun runs"
        )
    if unit.schema_version != current:
        return (
            f"made with schema {unit.schema_name!r} v{unit.schema_version}, this docextract has "
            f"v{current}; `docextract run` on the file makes a new extraction"
        )
    if unit.status == "running":
        return "in progress (a worker holds its claim; a crashed one's lease expires first)"
    return None


def locate(
    factory: sessionmaker[Session], document_id: int, settings: Settings
) -> Registered | str:
    """The document registered at a path that still holds its bytes, or served from a complete
    page cache; otherwise a message saying why it cannot be rerun (nothing is written then)."""
    with factory() as session:
        document = session.get(Document, document_id)
        if document is None:
            raise ConfigError(f"document id {document_id} is not in the database")
        paths = last_seen_paths(document)
        sha256, media_type, size = document.sha256, document.media_type, document.size_bytes
        parent_id, part = document.parent_id, (document.first_page, document.last_page)
    if parent_id is not None:  # a child document of a bundle: its pages of the parent's file
        found = locate(factory, parent_id, settings)
        if isinstance(found, str):
            return found
        assert part[0] is not None and part[1] is not None
        return Registered(document_id, found.file, found.error, (part[0], part[1]), sha256)
    for path in paths:
        if _holds(Path(path), sha256):
            return register(factory, Path(path), settings)
    cached = IngestedFile(Path(paths[0] if paths else ""), sha256, media_type or "", size)
    if media_type and page_cache_complete(cached, settings):
        return Registered(document_id, cached, None)
    where = f"last seen as {paths[0]!r}" if paths else "no path recorded"
    return (
        f"source file not found ({where}; {len(paths)} known path(s) missing or changed) and "
        "its pages are not all in the page cache: put the file back, or run "
        "`docextract run NEW_PATH` (same content, same document)"
    )


def _holds(path: Path, sha256: str) -> bool:
    if not path.is_file():
        return False
    try:
        return hash_file(path)[0] == sha256
    except InputError:  # unreadable now: try the next path
        return False


def page_cache_complete(file: IngestedFile, settings: Settings) -> bool:
    """True when every page of the document is cached as the rasterizer would render it now,
    so extraction needs no source file."""
    return cache_complete(file, settings.raster, settings.page_cache_dir)
