"""Corrections teach: reviewed records as ground truth, and the model scored against them.

`write_truth` writes what `docextract eval DIR` reads: each document's file copied beside a
`NAME.json` holding `{"document": NAME, "records": {schema: record}}`. `reviewed_cases` pairs
the model's original record (as it stood before the first review) with the reviewed one, for
`pipeline.evaluation.evaluate`; `calibration` says how often a value the model gave with a
confidence was kept by the reviewer, per confidence band.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from pipeline.evaluation import Case
from pipeline.review.editing import record_diff
from pipeline.review.pages import source_file
from pipeline.store.bundles import pages_label
from pipeline.store.models import Document, Extraction
from pipeline.store.queries import Selection, last_seen_paths, select_extractions
from pipeline.store.reviews import Reviewed, min_confidence, reviewed
from schemas import get_schema

BANDS = ((0.0, 0.5), (0.5, 0.8), (0.8, 0.9), (0.9, 0.97), (0.97, 1.0001))


@dataclass
class TruthExport:
    documents: int = 0
    files: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # why a document could not be written


def write_truth(session: Session, selection: Selection, out: Path) -> TruthExport:
    """Write the selected extractions' current records as ground truth into the folder `out`
    (created), one JSON per document beside a copy of the document's file. A document whose
    file is gone everywhere is skipped (listed in `skipped`): eval needs the file to run on."""
    grouped: dict[int, list[Extraction]] = {}
    for row in select_extractions(session, selection):
        if row.record is not None:
            grouped.setdefault(row.document_id, []).append(row)
    out.mkdir(parents=True, exist_ok=True)
    result = TruthExport()
    for rows in grouped.values():
        document = rows[0].document
        if document.parent is not None:  # eval reads whole files: a page range has none
            result.skipped.append(
                f"{document.sha256[:12]}: pages {pages_label(document)} of a bundle "
                f"({document.parent.sha256[:12]}); ground truth is written for whole files only"
            )
            continue
        source = source_file(document)
        if source is None:
            where = last_seen_paths(document)
            result.skipped.append(
                f"{document.sha256[:12]}: file not found (last seen as {where[:1]!r})"
            )
            continue
        target = _target(out, source, document)
        shutil.copyfile(source, target)
        records = {row.schema_name: row.record for row in rows}
        truth = (
            target.with_name(target.name + ".json")
            if _stem_taken(target)
            else target.with_suffix(".json")
        )
        truth.write_text(
            json.dumps({"document": target.name, "records": records}, indent=2, ensure_ascii=False),
            encoding="utf-8",
        )
        result.documents += 1
        result.files += [target, truth]
    return result


def _target(out: Path, source: Path, document: Document) -> Path:
    """`out/NAME`, or `out/SHA8-NAME` when another document already took that name."""
    target = out / source.name
    if target.exists() and _digest_of(target) != document.sha256:
        target = out / f"{document.sha256[:8]}-{source.name}"
    return target


def _digest_of(path: Path) -> str:
    from pipeline.ingest import hash_file

    return hash_file(path)[0]


def _stem_taken(target: Path) -> bool:
    """True when another file shares the document's stem (a.pdf and a.png): the truth is then
    NAME.ext.json so that it names its own document."""
    return any(p != target and p.suffix != ".json" for p in target.parent.glob(f"{target.stem}.*"))


def reviewed_cases(session: Session, schema: str | None = None) -> list[Case]:
    """One eval case per approved or corrected extraction: the model's original record scored
    against the reviewed record; `status` is the decision."""
    cases = []
    for item in reviewed(session, schema=schema):
        paths = last_seen_paths(item.extraction.document)
        name = Path(paths[0]).name if paths else item.extraction.document.sha256[:12]
        cases.append(
            Case(
                name,
                get_schema(item.extraction.schema_name),
                item.final or {},
                item.original,
                item.action,
            )
        )
    return cases


def calibration(items: Sequence[Reviewed]) -> list[dict[str, Any]]:
    """Per confidence band: how many values the model gave with such a confidence, their mean
    confidence, and the share the reviewer kept unchanged (a calibrated model's two agree)."""
    counts = [[0, 0.0, 0] for _ in BANDS]  # values, confidence sum, kept
    for item in items:
        evidence = item.extraction.field_confidence or {}
        changed = {d["path"] for d in record_diff(item.original or {}, item.final or {})}
        for path, value in evidence.items():
            confidence = min_confidence({path: value})
            if confidence is None:
                continue
            band = next(i for i, (lo, hi) in enumerate(BANDS) if lo <= confidence < hi)
            counts[band][0] += 1
            counts[band][1] += confidence
            counts[band][2] += path not in changed
    return [
        {
            "band": f"{lo:.2f}-{min(hi, 1.0):.2f}",
            "values": n,
            "mean_confidence": round(total / n, 3) if n else None,
            "kept_share": round(kept / n, 3) if n else None,
        }
        for (lo, hi), (n, total, kept) in zip(BANDS, counts, strict=True)
    ]
