"""Helpers for the operations tests: tiny documents on disk and extractions in given states.

States are written through the repository's own claim/save_outcome, so the rows and their
history look exactly like a worker's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from pipeline.errors import ConfigError
from pipeline.ingest import hash_file
from pipeline.prompts import PROMPT_VERSION
from pipeline.settings import Settings
from pipeline.store import repository as repo
from pipeline.store.models import Extraction
from schemas import get_schema

LEASE = timedelta(hours=1)
MODEL_ID = "scripted-empty"  # what the `scripted` backend stamps on its records


def make_png(path: Path, label: str, size: tuple[int, int] = (200, 260)) -> Path:
    """A small white page with `label` written on it (distinct labels, distinct sha256)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, "white")
    ImageDraw.Draw(image).text((10, 10), label, fill="black")
    image.save(path)
    return path


def ops_settings(db_url: str, cache_dir: Path, **extra: Any) -> Settings:
    """Settings for fast runs: the scripted backend, one schema, the whole page as one image."""
    values: dict[str, Any] = {
        "db_url": db_url,
        "cache_dir": cache_dir,
        "workers": 1,
        "schemas": ["invoice"],
        "model": {"backend": "scripted", "batch_size": 4, "max_new_tokens": 256},
        "tiling": {"strategy": "anyres"},
    }
    values.update(extra)
    return Settings(**values)


@dataclass(frozen=True)
class Seeded:
    name: str
    path: Path
    document_id: int
    extraction_id: int
    sha256: str


def seed(
    factory: sessionmaker[Session],
    folder: Path,
    name: str,
    status: str,
    *,
    category: str | None = None,
    record: dict[str, Any] | None = None,
    schema: str = "invoice",
    model_id: str = MODEL_ID,
    prompt_version: str = PROMPT_VERSION,
    updated_at: datetime | None = None,
    schema_version: str | None = None,
) -> Seeded:
    """A document file `folder/name` and one extraction of it that ended in `status`."""
    path = make_png(folder / name, name)
    sha256, size = hash_file(path)
    version = schema_version or _schema_version(schema)
    with factory.begin() as session:
        document = repo.register_document(session, path, sha256, size, "image/png")
        unit = repo.UnitOfWork(document.id, schema, version, model_id, prompt_version)
        extraction = repo.claim(session, unit, "seeder", lease=LEASE)
        assert extraction is not None
        fields: dict[str, Any] = {"status": status, "record": record, "pages_total": 1}
        if category:
            fields.update(error_category=category, error_message=f"{category} on {name}")
        assert repo.save_outcome(session, extraction.id, "seeder", repo.ExtractionOutcome(**fields))
        if updated_at is not None:
            session.execute(
                update(Extraction)
                .where(Extraction.id == extraction.id)
                .values(updated_at=updated_at)
            )
        return Seeded(name, path, document.id, extraction.id, sha256)


def _schema_version(schema: str) -> str:
    try:
        return get_schema(schema).schema_version
    except ConfigError:  # an unregistered schema name: any version will do for the row
        return "1.0"
