"""Chart: type, title, axes with labels and units, series of data points.

Values are Decimals read from data labels or, failing those, from the axis scale. `highest()` and
`lowest()` answer the questions people ask of a chart ("what is the highest value?").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

from schemas.base import ExtractionSchema
from schemas.types import Number, bounded

AxisLabel = Annotated[str, bounded(80)]
Unit = Annotated[str, bounded(24)]
PointLabel = Annotated[str, bounded(40)]
SeriesName = Annotated[str, bounded(60)]
Title = Annotated[str, bounded(160)]
ChartType = Literal["bar", "line", "pie", "scatter", "area", "other"]


class Axis(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: AxisLabel | None = Field(None, description="The axis title as printed.")
    unit: Unit | None = Field(
        None, description="Unit of the axis values, e.g. EUR, %, t, million USD."
    )


class DataPoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: PointLabel | None = Field(
        None, description="Category or x value as printed under the axis, e.g. Q1, 2024, Jan."
    )
    value: Number | None = Field(
        None, description="The value as a plain number, without unit or % sign."
    )


class Series(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: SeriesName | None = Field(
        None, description="The series name from the legend; null when there is no legend."
    )
    points: list[DataPoint] = Field(
        default_factory=list, max_length=40, description="Data points, left to right."
    )


@dataclass(frozen=True)
class Extreme:
    """One data point picked out of a chart, with where it is."""

    series: str | None
    label: str | None
    value: Decimal


class Chart(ExtractionSchema):
    """A chart or graph: bar, line, pie..."""

    schema_name: ClassVar[str] = "chart"
    schema_version: ClassVar[str] = "1.0"
    summary: ClassVar[str] = "a chart or graph: axes, series and their data points"
    required_fields: ClassVar[tuple[str, ...]] = ("series",)

    chart_type: ChartType | None = Field(
        None, description="bar, line, pie, scatter, area, or other."
    )
    title: Title | None = Field(None, description="The chart's title or caption.")
    x_axis: Axis | None = Field(None, description="The horizontal (category) axis.")
    y_axis: Axis | None = Field(None, description="The vertical (value) axis.")
    series: list[Series] = Field(
        default_factory=list, max_length=8, description="Every data series, in legend order."
    )

    @classmethod
    def merge(cls, partials: Sequence[Self]) -> Self:
        """Scalars: first non-null. Series with the same name (tiles that each saw the legend)
        become one, their points joined in order; a point already present is kept once."""
        if not partials:
            raise ValueError(f"nothing to merge for schema {cls.schema_name!r}")
        merged: dict[str, Any] = {
            name: next((getattr(p, name) for p in partials if getattr(p, name)), None)
            for name in ("chart_type", "title", "x_axis", "y_axis")
        }
        series: dict[str, Series] = {}
        for partial in partials:
            for one in partial.series:
                key = " ".join((one.name or "").split()).casefold()
                if key not in series:
                    series[key] = one.model_copy(deep=True)
                    continue
                known = series[key].points
                known += [p for p in one.points if p not in known]
        merged["series"] = list(series.values())
        return cls.model_validate(merged)

    def review_reasons(self) -> list[str]:
        reasons = super().review_reasons()
        for number, one in enumerate(self.series, start=1):
            name = one.name or f"series {number}"
            if not one.points:
                reasons.append(f"{name!r} has no data points")
            missing = [p.label or "?" for p in one.points if p.value is None]
            if missing:
                reasons.append(f"{name!r}: no value read for {', '.join(missing)}")
            labels = [p.label for p in one.points if p.label is not None]
            repeated = sorted({label for label in labels if labels.count(label) > 1})
            if repeated:
                reasons.append(f"{name!r}: {', '.join(repeated)} appear more than once")
        return reasons

    def points(self) -> list[Extreme]:
        """Every point with a value, with its series name."""
        return [
            Extreme(s.name, p.label, p.value)
            for s in self.series
            for p in s.points
            if p.value is not None
        ]

    def highest(self) -> Extreme | None:
        """The point with the highest value (the first one on a tie), or None without values."""
        return max(self.points(), key=lambda p: p.value, default=None)

    def lowest(self) -> Extreme | None:
        return min(self.points(), key=lambda p: p.value, default=None)
