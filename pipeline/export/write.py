"""Exports of current extractions for an ERP: JSON Lines, CSV or Parquet, one row per record.

Every row starts with the same provenance columns (document, schema, model, prompt version,
status, tokens...). The record follows:
- jsonl: `record` (and `provenance`) as nested JSON, exactly as stored, and `evidence`: per
  field path its confidence, page, box, match kind, matched text and reasons;
- csv: the record flattened into `record.<dotted.path>` columns, each followed by its
  `.confidence`, `.page` and `.box` ("x0 y0 x1 y1" in page pixels); every list of the record
  (line items, tax lines, table rows) goes to its own file `<stem>.<path>.csv`, one row per
  item, linked by `extraction_id` and numbered from 1 in `item`, its columns followed by their
  evidence the same way. Containers inside an item are JSON text; an empty cell is a null; a
  text cell that starts with = + - @ (or a tab or CR) and is not a number gets a leading ' so
  that a spreadsheet shows it instead of running it;
- parquet (pyarrow, `pip install 'docextract[export]'`): `record` as a typed struct column
  (amounts decimal128, dates date32), `evidence` a list of `{path, confidence, page, box, match,
  matched_text, reasons}`.
CSV and Parquet columns come from the schema (`pipeline.export.columns`), not from the data, so
every export of a schema has the same columns; they need the selection to hold one schema.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from pipeline.errors import ConfigError
from pipeline.export.columns import (
    EVIDENCE_SHAPE,
    Shape,
    array_paths,
    arrow_type,
    conform,
    evidence_cells,
    evidence_list,
    item_columns,
    item_row,
    leaf_columns,
    lookup,
    schema_shape,
    with_evidence,
)
from pipeline.store.bundles import pages_label
from pipeline.store.models import Extraction
from pipeline.store.queries import Selection, last_seen_paths, select_extractions, to_utc_assumed
from schemas import get_schema

FORMATS = ("jsonl", "csv", "parquet", "truth")
# What spreadsheet tools read as the start of a formula (OWASP "CSV injection").
_FORMULA_START = frozenset("=+-@\t\r")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_S, _I, _F = Shape("string"), Shape("integer"), Shape("number")
# The provenance columns every row starts with, with their types.
PROVENANCE = Shape(
    "object",
    {
        "extraction_id": _I,
        "document_sha256": _S,
        "document_name": _S,
        "document_path": _S,
        "file_sha256": _S,
        "file_pages": _S,
        "media_type": _S,
        "page_count": _I,
        "schema_name": _S,
        "schema_version": _S,
        "model_id": _S,
        "prompt_version": _S,
        "status": _S,
        "error_category": _S,
        "error_message": _S,
        "review_reasons": Shape("array", item=_S),
        "pages_total": _I,
        "pages_failed": _I,
        "image_tokens": _I,
        "input_tokens": _I,
        "output_tokens": _I,
        "seconds": _F,
        "attempts": _I,
        "run_id": _I,
        "updated_at": _S,
    },
)
PROVENANCE_COLUMNS = tuple(PROVENANCE.fields)


@dataclass(frozen=True)
class ExportResult:
    rows: int
    files: list[Path]


def export_rows(session: Session, selection: Selection) -> list[dict[str, Any]]:
    """One dict per selected extraction: the provenance columns, `provenance` and `record`."""
    return [_row(e) for e in select_extractions(session, selection)]


def _row(e: Extraction) -> dict[str, Any]:
    paths = last_seen_paths(e.document)
    row: dict[str, Any] = {
        "extraction_id": e.id,
        "document_sha256": e.document.sha256,
        "document_name": Path(paths[0]).name if paths else None,
        "document_path": paths[0] if paths else None,
        # a bundle's document: the file it is part of and its pages there (else its own hash)
        "file_sha256": e.document.parent.sha256 if e.document.parent else e.document.sha256,
        "file_pages": pages_label(e.document) if e.document.parent else None,
        "media_type": e.document.media_type,
        "page_count": e.document.page_count,
        "schema_name": e.schema_name,
        "schema_version": e.schema_version,
        "model_id": e.model_id,
        "prompt_version": e.prompt_version,
        "status": e.status,
        "error_category": e.error_category,
        "error_message": e.error_message,
        "review_reasons": list(e.review_reasons or []),
        "pages_total": e.pages_total,
        "pages_failed": e.pages_failed,
        "image_tokens": e.image_tokens,
        "input_tokens": e.input_tokens,
        "output_tokens": e.output_tokens,
        "seconds": e.seconds,
        "attempts": e.attempts,
        "run_id": e.run_id,
        "updated_at": to_utc_assumed(e.updated_at).isoformat(),
    }
    return {
        **row,
        "provenance": dict(e.provenance or {}),
        "record": e.record,
        "evidence": e.field_confidence,
    }


def export(session: Session, selection: Selection, fmt: str, out: Path) -> ExportResult:
    """Write the selected extractions to `out` in `fmt`; returns the row count and the files
    written (CSV adds one file per list field). Raises ConfigError for an unknown format, a
    CSV/Parquet selection that mixes schemas or names an unknown one, a missing pyarrow, or an
    `out` that cannot be written."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "truth":  # `out` is a folder: documents with their NAME.json (pipeline.review)
        from pipeline.review.truth import write_truth

        written = write_truth(session, selection, out)
        return ExportResult(written.documents, written.files)
    rows = export_rows(session, selection)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "jsonl":
            return ExportResult(len(rows), write_jsonl(rows, out))
        shape = _record_shape(rows, selection.schema, fmt)
        writer = write_csv if fmt == "csv" else write_parquet
        return ExportResult(len(rows), writer(rows, out, shape))
    except OSError as exc:  # a folder that cannot be made, a read-only disk, no permission
        where = f" ({exc.filename})" if exc.filename else ""
        raise ConfigError(
            f"cannot write the export to {str(out)!r}{where}: {exc.strerror or exc}; choose "
            "another --out"
        ) from None


def _record_shape(rows: Sequence[dict[str, Any]], schema: str | None, fmt: str) -> Shape:
    names = sorted({row["schema_name"] for row in rows} | ({schema} if schema else set()))
    if len(names) > 1:
        raise ConfigError(
            f"the selection holds records of schemas {', '.join(map(repr, names))}; {fmt} "
            "columns come from one schema: pass --schema (or export jsonl)"
        )
    if not names:
        return Shape("object")
    return schema_shape(get_schema(names[0]))


def write_jsonl(rows: Sequence[dict[str, Any]], out: Path) -> list[Path]:
    with out.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return [out]


def write_csv(rows: Sequence[dict[str, Any]], out: Path, shape: Shape) -> list[Path]:
    """The main file plus one file per list field of the schema (see the module docstring)."""
    leaves = leaf_columns(shape)
    main = [
        {
            **{k: row[k] for k in PROVENANCE_COLUMNS},
            **{f"record.{c}": lookup(row["record"], c) for c in leaves},
            **evidence_cells(row["evidence"], leaves, named="record."),
        }
        for row in rows
    ]
    columns = [*PROVENANCE_COLUMNS, *with_evidence([f"record.{c}" for c in leaves])]
    files = [_write_csv_file(out, columns, main)]
    for path, item in array_paths(shape).items():
        item_cols = item_columns(item)
        items = [
            {
                "extraction_id": row["extraction_id"],
                "document_sha256": row["document_sha256"],
                "item": number,
                **item_row(value, item_cols),
                **evidence_cells(row["evidence"], item_cols, f"{path}[{number - 1}]."),
            }
            for row in rows
            for number, value in enumerate(lookup(row["record"], path) or [], start=1)
        ]
        link = ["extraction_id", "document_sha256", "item"]
        columns = [*link, *with_evidence(item_cols)]
        files.append(_write_csv_file(child_csv_path(out, path), columns, items))
    return files


def child_csv_path(out: Path, list_path: str) -> Path:
    """Where the items of the record list `list_path` (e.g. `line_items`) go next to `out`."""
    return out.with_name(f"{out.stem}.{list_path}.csv")


def _write_csv_file(path: Path, columns: list[str], rows: Sequence[dict[str, Any]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: csv_cell(row.get(k)) for k in columns})
    return path


def csv_cell(value: Any) -> str:
    """How one value is written to CSV: empty for null, JSON text for lists, true/false, and
    text that a spreadsheet would run as a formula (a file named `=HYPERLINK(...)`, a field
    the model copied) prefixed with `'`. Numbers such as -12.50 stay as they are."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    text = str(value)
    if text[:1] in _FORMULA_START and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


def write_parquet(rows: Sequence[dict[str, Any]], out: Path, shape: Shape) -> list[Path]:
    """One Parquet file typed from the schema: `record` a struct column, `provenance` JSON text
    (its keys vary by backend)."""
    pa, pq = _pyarrow()
    row_shape = Shape(
        "object",
        {
            **PROVENANCE.fields,
            "provenance": Shape("json"),
            "record": shape,
            "evidence": EVIDENCE_SHAPE,
        },
    )
    schema = pa.schema([pa.field(k, arrow_type(v)) for k, v in row_shape.fields.items()])
    shaped = [
        conform({**row, "evidence": evidence_list(row.get("evidence"))}, row_shape) for row in rows
    ]
    table = pa.Table.from_pylist(shaped, schema=schema)
    pq.write_table(table, out)
    return [out]


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError(
            "Parquet export needs pyarrow, which is not installed: "
            "`pip install 'docextract[export]'` (or `pip install pyarrow`), or export jsonl/csv"
        ) from None
    return pa, pq
