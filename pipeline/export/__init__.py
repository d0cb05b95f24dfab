"""Exports of stored records: JSONL, CSV and Parquet (`write`), and their flat columns
(`columns`)."""

from pipeline.export.write import ExportResult, export

__all__ = ["ExportResult", "export"]
