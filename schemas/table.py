"""Table: title, column headers, rows of cells and notes; one table even across pages.

A row is a list of cell texts aligned with `columns`: the i-th cell belongs to the i-th column
(null for an empty cell). Naming the column in every cell would triple the output tokens of a
dense table and push it past the generation budget, so the position says it; `cells()` and
`row_dicts()` give the explicit (row, column, text) view.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Self

from pydantic import Field

from schemas.base import ExtractionSchema
from schemas.types import bounded

MAX_COLUMNS = 16
Title = Annotated[str, bounded(160)]
Header = Annotated[str, bounded(60)]
Note = Annotated[str, bounded(240)]
CellText = Annotated[str, bounded(80)]
Row = Annotated[list[CellText | None], Field(max_length=MAX_COLUMNS)]


@dataclass(frozen=True)
class Cell:
    row: int  # 1-based, in the table's reading order
    column: str
    text: str | None


class Table(ExtractionSchema):
    """The main table of a document: a price list, statement, schedule or report table."""

    schema_name: ClassVar[str] = "table"
    schema_version: ClassVar[str] = "1.0"
    summary: ClassVar[str] = "a table: column headers and rows of cells"
    required_fields: ClassVar[tuple[str, ...]] = ("columns", "rows")

    title: Title | None = Field(None, description="The table's title or caption.")
    columns: list[Header] = Field(
        default_factory=list,
        max_length=MAX_COLUMNS,
        description="Column headers, left to right; a header on two lines joined with a space.",
    )
    rows: list[Row] = Field(
        default_factory=list,
        max_length=150,
        description="Every data row, top to bottom; each row lists its cells as printed, one per "
        "column in the order of the headers, null for an empty cell. Not the header row.",
    )
    notes: list[Note] = Field(
        default_factory=list,
        max_length=6,
        description="Footnotes or remarks printed under the table.",
    )

    @classmethod
    def merge(cls, partials: Sequence[Self]) -> Self:
        """One table from pages (or tiles) in order: the first headers seen, rows concatenated.

        A continued table repeats its header on the next page: a row equal to the headers is
        dropped, and so is a row repeated across the boundary of two consecutive partials.
        """
        if not partials:
            raise ValueError(f"nothing to merge for schema {cls.schema_name!r}")
        columns = next((p.columns for p in partials if p.columns), [])
        header = [_norm(c) for c in columns]
        row_lists = [
            [row for row in p.rows if [_norm(c) for c in row] != header or not header]
            for p in partials
        ]
        merged: dict[str, Any] = {
            "title": next((p.title for p in partials if p.title), None),
            "columns": columns,
            "rows": _join_rows(row_lists),
            "notes": list(dict.fromkeys(n for p in partials for n in p.notes)),
        }
        return cls.model_validate(merged)

    def review_reasons(self) -> list[str]:
        reasons = super().review_reasons()
        width = len(self.columns)
        if not width:
            return reasons
        for number, row in enumerate(self.rows, start=1):
            if len(row) != width:
                reasons.append(f"row {number} has {len(row)} cells for {width} columns")
        return reasons

    def cells(self) -> list[Cell]:
        """Every cell with its 1-based row and its column header ('' past the last header)."""
        return [
            Cell(number, self.columns[i] if i < len(self.columns) else "", value)
            for number, row in enumerate(self.rows, start=1)
            for i, value in enumerate(row)
        ]

    def row_dicts(self) -> list[dict[str, str | None]]:
        """Rows as {column header: cell text} (cells past the last header are left out)."""
        return [dict(zip(self.columns, row, strict=False)) for row in self.rows]


def _join_rows(row_lists: list[list[list[str | None]]]) -> list[list[str | None]]:
    """Concatenate, keeping once the rows that end one partial and start the next (overlaps)."""
    joined: list[list[str | None]] = []
    for rows in row_lists:
        overlap = next(
            (n for n in range(min(len(joined), len(rows)), 0, -1) if joined[-n:] == rows[:n]), 0
        )
        joined.extend(rows[overlap:])
    return joined


def _norm(value: str | None) -> str:
    return " ".join((value or "").split()).casefold()
