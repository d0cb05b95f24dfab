"""Charts of the sample set, drawn with Pillow: a bar chart, a line chart, a grouped bar chart.

Every data point carries a printed value label, so the truth is what a reader can read off the
page (no guessing from bar heights). Flat colours on white keep the PNGs small.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from decimal import Decimal

from _render import Sample, font
from PIL import Image, ImageDraw

from schemas.chart import Axis, Chart, DataPoint, Series

WIDTH, HEIGHT = 1100, 760
LEFT, RIGHT, TOP, BOTTOM = 130, 1060, 120, 640  # plot area in pixels
INK, GRID = (30, 30, 30), (220, 220, 220)
COLOURS = ((33, 102, 172), (230, 120, 30), (60, 150, 80))


def _chart(
    kind: str,
    title: str,
    x: Axis,
    y: Axis,
    series: Sequence[tuple[str | None, Sequence[tuple[str, str]]]],
) -> Chart:
    return Chart(
        chart_type=kind,  # type: ignore[arg-type]
        title=title,
        x_axis=x,
        y_axis=y,
        series=[
            Series(
                name=name, points=[DataPoint(label=label, value=Decimal(v)) for label, v in points]
            )
            for name, points in series
        ],
    )


class _Plot:
    """Axes, grid, ticks and labels for values from 0 to `top`, categories along x."""

    def __init__(self, chart: Chart, top: int, step: int, labels: Sequence[str]) -> None:
        self.chart, self.top, self.labels = chart, top, labels
        self.image = Image.new("RGB", (WIDTH, HEIGHT), "white")
        self.draw = ImageDraw.Draw(self.image)
        self.draw.text(
            (WIDTH // 2, 40),
            chart.title or "",
            font=font("DejaVuSans-Bold", 34),
            fill=INK,
            anchor="ma",
        )
        small = font("DejaVuSans", 20)
        for value in range(0, top + 1, step):
            y = self.y(Decimal(value))
            self.draw.line([(LEFT, y), (RIGHT, y)], fill=GRID, width=2)
            self.draw.text((LEFT - 12, y), f"{value:,}", font=small, fill=INK, anchor="rm")
        self.draw.line([(LEFT, TOP), (LEFT, BOTTOM), (RIGHT, BOTTOM)], fill=INK, width=3)
        for index, label in enumerate(labels):
            self.draw.text((self.x(index), BOTTOM + 14), label, font=small, fill=INK, anchor="ma")
        axis = font("DejaVuSans", 22)
        x_axis, y_axis = chart.x_axis or Axis(), chart.y_axis or Axis()
        self.draw.text(
            ((LEFT + RIGHT) // 2, BOTTOM + 56), x_axis.label or "", font=axis, fill=INK, anchor="ma"
        )
        caption = Image.new("RGB", (BOTTOM - TOP, 40), "white")
        ImageDraw.Draw(caption).text(
            ((BOTTOM - TOP) // 2, 20), y_axis.label or "", font=axis, fill=INK, anchor="mm"
        )
        self.image.paste(caption.rotate(90, expand=True), (20, TOP))

    def x(self, index: float) -> float:
        return LEFT + (RIGHT - LEFT) * (index + 0.5) / len(self.labels)

    def y(self, value: Decimal) -> float:
        return BOTTOM - (BOTTOM - TOP) * float(value) / self.top

    def value_label(self, x: float, y: float, value: Decimal, colour: tuple[int, int, int]) -> None:
        self.draw.text(
            (x, y - 10), f"{value:,}", font=font("DejaVuSans-Bold", 19), fill=colour, anchor="mb"
        )

    def legend(self) -> None:
        x = LEFT + 20
        for colour, series in zip(COLOURS, self.chart.series, strict=False):
            self.draw.rectangle([x, TOP - 40, x + 22, TOP - 18], fill=colour)
            self.draw.text(
                (x + 30, TOP - 29),
                series.name or "",
                font=font("DejaVuSans", 20),
                fill=INK,
                anchor="lm",
            )
            x += 60 + 12 * len(series.name or "")

    def png(self) -> bytes:
        buffer = io.BytesIO()
        self.image.quantize(32, dither=Image.Dither.NONE).save(
            buffer, "PNG", optimize=True, dpi=(150, 150)
        )
        return buffer.getvalue()


def _bars(plot: _Plot) -> None:
    groups = len(plot.chart.series)
    slot = (RIGHT - LEFT) / len(plot.labels) * 0.7
    width = slot / groups
    for number, (series, colour) in enumerate(zip(plot.chart.series, COLOURS, strict=False)):
        for index, point in enumerate(series.points):
            assert point.value is not None
            left = plot.x(index) - slot / 2 + number * width
            plot.draw.rectangle(
                [left + 3, plot.y(point.value), left + width - 3, BOTTOM - 1], fill=colour
            )
            plot.value_label(left + width / 2, plot.y(point.value), point.value, INK)


def revenue_bars() -> Sample:
    """One series without a legend (its name is null in the truth), four quarters."""
    chart = _chart(
        "bar",
        "Quarterly revenue 2024",
        Axis(label="Quarter"),
        Axis(label="Revenue (million EUR)", unit="million EUR"),
        [(None, [("Q1", "12.4"), ("Q2", "15.1"), ("Q3", "13.8"), ("Q4", "18.2")])],
    )
    plot = _Plot(chart, 20, 5, ["Q1", "Q2", "Q3", "Q4"])
    _bars(plot)
    return Sample("chart-revenue-bar.png", (chart,), plot.png)


MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun")


def energy_lines() -> Sample:
    """Two series with a legend over six months; the highest value is Plant A in January."""
    chart = _chart(
        "line",
        "Monthly energy use 2025",
        Axis(label="Month"),
        Axis(label="Energy (MWh)", unit="MWh"),
        [
            ("Plant A", list(zip(MONTHS, ("412", "398", "371", "322", "290", "276"), strict=True))),
            ("Plant B", list(zip(MONTHS, ("254", "262", "249", "238", "268", "344"), strict=True))),
        ],
    )
    plot = _Plot(chart, 500, 100, list(MONTHS))
    for number, (series, colour) in enumerate(zip(chart.series, COLOURS, strict=False)):
        points = [(plot.x(i), plot.y(p.value or Decimal(0))) for i, p in enumerate(series.points)]
        plot.draw.line(points, fill=colour, width=5)
        for (x, y), point in zip(points, series.points, strict=True):
            plot.draw.ellipse([x - 7, y - 7, x + 7, y + 7], fill=colour)
            # The first series labels above its points, the second below, so they never collide.
            plot.value_label(x, y - 4 if number == 0 else y + 42, point.value or Decimal(0), colour)
    plot.legend()
    return Sample("chart-energy-line.png", (chart,), plot.png)


REGIONS = ("North", "South", "East", "West")


def headcount_grouped() -> Sample:
    """Two years side by side per region, with a legend."""
    chart = _chart(
        "bar",
        "Headcount by region",
        Axis(label="Region"),
        Axis(label="Employees"),
        [
            ("2024", list(zip(REGIONS, ("184", "231", "97", "142"), strict=True))),
            ("2025", list(zip(REGIONS, ("196", "218", "126", "151"), strict=True))),
        ],
    )
    plot = _Plot(chart, 250, 50, list(REGIONS))
    _bars(plot)
    plot.legend()
    return Sample("chart-headcount-grouped.png", (chart,), plot.png)
