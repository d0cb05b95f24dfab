"""`scripted-truth`: answers from the ground truth beside each document, never from a model.

With it the whole pipeline (rendering, words, grounding, confidence, review reasons, the store,
exports, `docextract eval`, the review desk) runs end to end on any labelled folder without a
model. Ground truth is the `docextract eval` format: `NAME.json` beside `NAME.pdf`.

How a request finds its document: every `VisionRequest` carries `document` (the source file's
path, set by `extract(document=...)`) and `page`. A routing request (`--schema auto`, the default)
is answered with the schema the document has truth for. The answer for the schema whose grammar
the request carries is the truth record, on every tile of page 1 (tile merging keeps a value that
several tiles agree on once), and an empty record on the other pages and for documents without
truth. So the values' page hints point at page 1, even where a value is printed further on
(grounding then finds it on its own page).

`--perturb digit|swap|foreign|made-up|date` (`model.perturb`) makes one must-be-grounded value
per record wrong that way (chosen by a hash of the document name and the perturbation, among the
values the perturbation applies to, labelled ones first); the model id says so
(`scripted-truth:digit`), so perturbed runs are units of work of their own.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pipeline.backends.scripted import empty_record_json
from pipeline.errors import ModelError
from pipeline.evaluation import GroundTruth, covers, load_ground_truth
from pipeline.evidence import kind_function, leaves, must_be_grounded
from pipeline.evidence.perturb import perturbations
from pipeline.geometry import ImageGeometry, anyres_image_tokens
from pipeline.settings import Settings
from pipeline.types import VisionOutput, VisionRequest
from schemas import get_schema
from schemas.base import ExtractionSchema


class TruthModel:
    """Answers each request from the ground truth of its document (see the module docstring)."""

    def __init__(self, perturb: str = "none") -> None:
        self.perturb = perturb
        self.model_id = "scripted-truth" if perturb == "none" else f"scripted-truth:{perturb}"
        self.geometry = ImageGeometry()
        self._folders: dict[Path, list[GroundTruth]] = {}
        self._lock = threading.Lock()

    def load(self) -> None:
        pass

    def image_tokens(self, width: int, height: int) -> int:
        return anyres_image_tokens(width, height, self.geometry)

    def generate(
        self, requests: Sequence[VisionRequest], *, timeout_s: float | None = None
    ) -> list[VisionOutput]:
        outputs = []
        for request in requests:
            text = self.answer(request)
            tokens = sum(self.image_tokens(im.width, im.height) for im in request.images)
            outputs.append(
                VisionOutput(
                    text=text,
                    stop_reason="end",
                    input_tokens=tokens + len(request.prompt) // 4,
                    output_tokens=max(1, len(text) // 4),
                    image_tokens=tokens,
                )
            )
        return outputs

    def answer(self, request: VisionRequest) -> str:
        """The JSON text answering `request`. Raises ModelError for a request that does not
        say which document it reads."""
        if request.document is None:
            raise ModelError(
                "the scripted-truth backend answers from the ground truth beside a document, "
                "and this request does not name its document (VisionRequest.document)"
            )
        choices = _routing_choices(request.json_schema)
        if choices is not None and choices[0] != "document_type":
            return json.dumps({choices[0]: choices[1][0]})  # another question: its first answer
        if choices is not None:
            return self._route(Path(request.document), *choices)
        empty = empty_record_json(request.json_schema)
        found = self._record(Path(request.document), request.json_schema)
        if found is None or (request.page or 1) != 1:
            return empty
        truth, schema, record = found
        if self.perturb != "none":
            record = self._perturbed(truth, schema, record)
        return json.dumps(record, ensure_ascii=False)

    def _route(self, document: Path, key: str, names: list[str]) -> str:
        """A routing answer: the first schema the document has truth for among `names` (the
        first name when it has none)."""
        resolved = document.resolve()
        truths = [t for t in self._truths(resolved.parent) if t.document.resolve() == resolved]
        chosen = next(
            (n for t in truths for r in t.records for n in names if get_schema(n) is get_schema(r)),
            names[0],
        )
        return json.dumps({key: chosen})

    def _truths(self, folder: Path) -> list[GroundTruth]:
        with self._lock:
            if folder not in self._folders:
                self._folders[folder] = load_ground_truth(folder)
            return self._folders[folder]

    def _record(
        self, document: Path, json_schema: dict[str, Any] | None
    ) -> tuple[GroundTruth, type[ExtractionSchema], dict[str, Any]] | None:
        resolved = document.resolve()
        for truth in self._truths(resolved.parent):
            if truth.document.resolve() != resolved:
                continue
            for name, record in truth.records.items():
                schema = get_schema(name)
                if json_schema is None or schema.grammar_schema() == json_schema:
                    return truth, schema, record
        return None

    def _perturbed(
        self, truth: GroundTruth, schema: type[ExtractionSchema], record: dict[str, Any]
    ) -> dict[str, Any]:
        """`record` with one must-be-grounded value made wrong by `self.perturb` (unchanged
        when no value admits it)."""
        seed = hashlib.sha256(f"{truth.document.name}/{self.perturb}".encode()).digest()
        rng = random.Random(seed)
        kind_of = kind_function(schema)
        labelled = truth.labelled_paths(schema) or ()
        candidates = [
            (path, value)
            for path, value in leaves(record)
            if must_be_grounded(schema, path) and kind_of(path, value) != "skip"
        ]
        preferred = [c for c in candidates if labelled and covers(labelled, c[0])]
        preferred = preferred or candidates
        rng.shuffle(preferred)
        for path, value in preferred + [c for c in candidates if c not in preferred]:
            foreign = self._foreign(truth, schema, path)
            wrong = perturbations(value, kind_of(path, value), foreign, rng).get(self.perturb)
            if wrong is None:
                continue
            changed = _set(record, path, wrong)
            try:
                return schema.model_validate(changed).model_dump(mode="json")
            except ValidationError:
                continue  # not a valid record that way (a date pattern): another value
        return record

    def _foreign(self, truth: GroundTruth, schema: type[ExtractionSchema], path: str) -> list[Any]:
        """The same field's values in the other documents of the folder."""
        out = []
        for other in self._truths(truth.document.resolve().parent):
            if other.document == truth.document:
                continue
            for name, record in other.records.items():
                if get_schema(name) is schema:
                    out += [v for p, v in leaves(record) if p == path]
        return out


def _routing_choices(json_schema: dict[str, Any] | None) -> tuple[str, list[str]] | None:
    """(key, names) of a routing request's grammar: one property, a string enum of schema
    names (`pipeline.routing.classify.routing_grammar`); None for an extraction request."""
    properties = (json_schema or {}).get("properties") or {}
    if len(properties) != 1:
        return None
    ((key, spec),) = properties.items()
    names = spec.get("enum") if isinstance(spec, dict) else None
    return (key, [str(n) for n in names]) if names else None


def _set(record: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of `record` with the leaf at `path` (`a.b`, `items[2].c`, `rows[1][0]`) set."""
    copy = json.loads(json.dumps(record))
    steps: list[str | int] = [
        int(index) if index else key for key, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path)
    ]
    node: Any = copy
    for step in steps[:-1]:
        node = node[step]
    node[steps[-1]] = value
    return copy


def create(settings: Settings) -> TruthModel:
    """The `scripted-truth` backend, perturbed as `settings.model.perturb` says."""
    return TruthModel(settings.model.perturb)
