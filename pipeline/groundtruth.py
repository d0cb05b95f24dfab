"""Ground truth beside each document, in the `docextract eval` format: `NAME.json` next to
`NAME.pdf`, `{"document": ..., "records": {schema: record}, "labelled": {schema: [paths]}}`.

`labelled` says which paths were labelled (a list path: its items were); a path outside it is
unknown, not absent, and is scored nowhere (`covers`). Without the key, every path is labelled.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pipeline.errors import ConfigError
from pipeline.evidence.fields import generic
from schemas import get_schema
from schemas.base import ExtractionSchema


@dataclass(frozen=True)
class GroundTruth:
    """The labelled records of one document, by schema name (each in `model_dump(mode="json")`
    form), read from the `NAME.json` beside it; `labelled` the paths labelled per schema name
    (None: all of them)."""

    document: Path
    source: Path
    records: dict[str, dict[str, Any]]
    labelled: dict[str, tuple[str, ...]] | None = None

    def labelled_paths(self, schema: type[ExtractionSchema]) -> tuple[str, ...] | None:
        """The paths labelled for `schema` (None: every path)."""
        if self.labelled is None:
            return None
        for key, paths in self.labelled.items():
            if get_schema(key) is schema:
                return paths
        return ()


def covers(labelled: Iterable[str] | None, path: str) -> bool:
    """Whether field `path` (`total`, `line_items[2].amount` or `line_items[].amount`) is under
    one of the `labelled` paths (`line_items` covers its items' fields; None covers all)."""
    if labelled is None:
        return True
    path = generic(path)
    for label in labelled:
        label = generic(label)
        if path == label or path.startswith((label + ".", label + "[")):
            return True
    return False


def load_ground_truth(folder: Path) -> list[GroundTruth]:
    """Every ground truth under `folder` (recursively, hidden files skipped), sorted by document.

    A ground-truth file is a `.json` holding `{"records": {schema: record}}`, and optionally
    `"document": "NAME.pdf"` (else the one non-JSON file with the same stem beside it). Other
    JSON files are not ground truth and are left alone. Raises ConfigError for a truth whose
    document is missing or whose record does not validate against its schema.
    """
    truths = []
    for path in sorted(folder.rglob("*.json")):
        if any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"Cannot read {str(path)!r}: {exc}") from None
        if isinstance(data, dict) and isinstance(data.get("records"), dict):
            truths.append(_truth(path, data))
    return sorted(truths, key=lambda t: str(t.document))


def _truth(path: Path, data: dict[str, Any]) -> GroundTruth:
    if data.get("document"):
        document = path.parent / str(data["document"])
    else:
        siblings = [p for p in path.parent.glob(f"{path.stem}.*") if p.suffix != ".json"]
        document = siblings[0] if len(siblings) == 1 else path.with_suffix(".pdf")
    if not document.is_file():
        raise ConfigError(
            f"{str(path)!r} is ground truth for {str(document)!r}, which does not exist; set "
            '"document" in it to the file name of the document.'
        )
    labelled = data.get("labelled")
    if labelled is not None and not (
        isinstance(labelled, dict)
        and all(
            isinstance(v, list) and all(isinstance(p, str) for p in v) for v in labelled.values()
        )
    ):
        raise ConfigError(
            f'{str(path)!r}: "labelled" must map schema names to lists of field paths, '
            'e.g. {"invoice": ["total", "seller.name", "line_items"]}'
        )
    records = {}
    for name, record in data["records"].items():
        schema = get_schema(name)
        try:
            records[name] = schema.model_validate(record).model_dump(mode="json")
        except ValidationError as exc:
            raise ConfigError(
                f"{str(path)!r}: the {name!r} record is not a valid {schema.schema_name!r} "
                f"v{schema.schema_version} record: {exc.errors(include_url=False)[0]}"
            ) from None
    paths = {k: tuple(v) for k, v in labelled.items()} if labelled is not None else None
    return GroundTruth(document, path, records, paths)
