"""Drawing helpers for the sample documents: number formats, fpdf2 and Pillow pages, scan looks.

Everything here is deterministic: no clock, no global random state, fixed PDF dates. Pillow pages
use DejaVu fonts from the system (package fonts-dejavu-core, which fontconfig pulls in wherever
poppler is installed) because Pillow's bundled font has no `€` or umlauts.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from functools import cache
from pathlib import Path

from fpdf import FPDF
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont

from schemas.base import ExtractionSchema

# Fixed metadata date of every PDF, so that a regeneration gives the same bytes.
PDF_DATE = datetime(2025, 1, 1, tzinfo=UTC)
CREATOR = "docextract sample_docs/generate.py"
_FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/dejavu", "/usr/share/fonts/TTF")
MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


@dataclass(frozen=True)
class Sample:
    """One document of the set: its file name, its ground truth (one record per schema that
    applies, e.g. an invoice and its line-item table), and how to draw it."""

    name: str
    truths: tuple[ExtractionSchema, ...]
    render: Callable[[], bytes]


# --- numbers, dates, identifiers ------------------------------------------------------------------


@dataclass(frozen=True)
class NumberFormat:
    """How one locale prints numbers: `pattern` places the currency around the number."""

    thousands: str
    decimal: str
    pattern: str  # e.g. "€{}", "{} €", "CHF {}"
    parentheses: bool = False  # negatives as accountants print them: (150,00)

    def number(self, value: Decimal, places: int = 2) -> str:
        text = f"{abs(value.quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP)):f}"
        whole, _, fraction = text.partition(".")
        groups = [whole[max(0, end - 3) : end] for end in range(len(whole), 0, -3)][::-1]
        digits = self.thousands.join(groups) + (self.decimal + fraction if fraction else "")
        if value < 0:
            return f"({digits})" if self.parentheses else "-" + digits
        return digits

    def money(self, value: Decimal) -> str:
        """`value` with its currency; a minus goes in front of both (-$500.00, -500,00 €),
        parentheses around both ((150,00 €))."""
        if value < 0 and self.parentheses:
            return f"({self.pattern.format(self.number(abs(value)))})"
        return ("-" if value < 0 else "") + self.pattern.format(self.number(abs(value)))

    def plain(self, value: Decimal) -> str:
        """A quantity or rate: as many decimals as it has, none when whole (7.5, 12, 8.25)."""
        exponent = value.normalize().as_tuple().exponent
        return self.number(value, max(0, -exponent) if isinstance(exponent, int) else 0)


def date_long_en(day: date) -> str:
    return f"{day.day} {MONTHS[day.month - 1]} {day.year}"


def date_dots(day: date) -> str:
    return day.strftime("%d.%m.%Y")


def date_us(day: date) -> str:
    return day.strftime("%m/%d/%Y")


def iban(country: str, bban: str) -> str:
    """A checksum-valid IBAN (ISO 13616 mod 97) for a made-up account, printed in groups of 4."""
    digits = "".join(str(int(c, 36)) for c in bban + country + "00")
    compact = f"{country}{98 - int(digits) % 97:02d}{bban}"
    return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))


def address_lines(address: str) -> list[str]:
    """Split a one-line address at its commas, keeping a US `City, ST 12345` line whole."""
    lines: list[str] = []
    for part in address.split(", "):
        state, _, zip_code = part.partition(" ")
        if lines and len(state) == 2 and state.isupper() and zip_code.isdigit():
            lines[-1] += ", " + part
        else:
            lines.append(part)
    return lines


# --- fpdf2 ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """A table column, for fpdf2 and Pillow pages alike."""

    title: str
    width: float  # mm
    align: str = "L"  # L, R (or C on Pillow pages)


class Pdf(FPDF):
    """An A4 fpdf2 document in millimetres with fixed metadata and core fonts in Windows-1252.

    `running_header` is printed at the top of every page after the first, `footer_left` and
    `page_label` (with `{page}` and `{pages}`) at the foot of every page.
    """

    def __init__(self, title: str, author: str, footer_left: str = "", page_label: str = ""):
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self.core_fonts_encoding = "windows-1252"  # core fonts then print €
        self.set_creation_date(PDF_DATE)
        self.set_title(title)
        self.set_author(author)
        self.set_creator(CREATOR)
        self.set_producer("fpdf2")  # without its version, so that a patch release changes no byte
        self.set_auto_page_break(False)  # layouts break pages themselves, between table rows
        self.set_margins(20, 18, 20)
        self.running_header, self.footer_left, self.page_label = "", footer_left, page_label

    def header(self) -> None:
        if self.page_no() > 1 and self.running_header:
            self.set_font("helvetica", "", 8)
            self.set_text_color(110)
            self.cell(0, 4, self.running_header, align="R")
            self.set_text_color(0)
            self.set_xy(self.l_margin, 30)

    def footer(self) -> None:
        self.set_xy(self.l_margin, -14)
        self.set_font("helvetica", "", 7.5)
        self.set_text_color(110)
        self.cell(130, 4, self.footer_left)
        label = self.page_label.format(page=self.page_no(), pages=self.str_alias_nb_pages)
        self.cell(0, 4, label, align="R")
        self.set_text_color(0)

    def row(self, columns: Sequence[Column], cells: Sequence[str], height: float) -> None:
        """One table row at the cursor. Raises ValueError when a cell would not fit its column."""
        self.set_x(self.l_margin)
        for column, text in zip(columns, cells, strict=True):
            if self.get_string_width(text) > column.width - 2:
                raise ValueError(f"{text!r} does not fit the {column.title!r} column")
            self.cell(column.width, height, text, align=column.align)
        self.ln(height)

    def to_bytes(self) -> bytes:
        return bytes(self.output())


# --- Pillow pages ---------------------------------------------------------------------------------

Color = tuple[int, int, int]
INK: Color = (25, 25, 25)


@cache
def font(name: str, pixels: int) -> ImageFont.FreeTypeFont:
    """DejaVu `name` (e.g. "DejaVuSans-Bold") at `pixels` px; raises FileNotFoundError if absent."""
    for folder in _FONT_DIRS:
        path = Path(folder) / f"{name}.ttf"
        if path.is_file():
            return ImageFont.truetype(str(path), pixels)
    raise FileNotFoundError(
        f"font {name!r} not found in {', '.join(_FONT_DIRS)}; install fonts-dejavu-core"
    )


class Canvas:
    """A white page drawn with Pillow; positions in millimetres, text sizes in points."""

    def __init__(self, width_mm: float, height_mm: float, dpi: int, family: str = "DejaVuSans"):
        self.dpi, self.family = dpi, family
        self.image = Image.new("RGB", (self.px(width_mm), self.px(height_mm)), "white")
        self.draw = ImageDraw.Draw(self.image)

    def px(self, mm: float) -> int:
        return round(mm * self.dpi / 25.4)

    def face(self, pt: float, bold: bool = False) -> ImageFont.FreeTypeFont:
        return font(self.family + ("-Bold" if bold else ""), round(pt * self.dpi / 72))

    def text(
        self,
        x: float,
        y: float,
        text: str,
        pt: float = 10,
        *,
        bold: bool = False,
        align: str = "L",
        fill: Color = INK,
    ) -> None:
        """Draw `text`, its top at `y` mm; `align` L, R or C puts `x` at its left/right/middle."""
        anchor = {"L": "la", "R": "ra", "C": "ma"}[align]
        self.draw.text(
            (self.px(x), self.px(y)), text, font=self.face(pt, bold), fill=fill, anchor=anchor
        )

    def row(
        self,
        x: float,
        y: float,
        columns: Sequence[Column],
        cells: Sequence[str],
        pt: float = 10,
        *,
        bold: bool = False,
        fill: Color = INK,
    ) -> None:
        """One table row with its top at `y`. Raises ValueError when a cell would not fit."""
        face = self.face(pt, bold)
        for column, text in zip(columns, cells, strict=True):
            if face.getlength(text) > self.px(column.width - 2):
                raise ValueError(f"{text!r} does not fit the {column.title!r} column")
            left = x + 1 if column.align == "L" else x + column.width - 1
            self.text(left, y, text, pt, bold=bold, align=column.align, fill=fill)
            x += column.width

    def rule(self, x0: float, x1: float, y: float, width_pt: float = 0.6, fill: Color = INK):
        stroke = max(1, round(width_pt * self.dpi / 72))
        self.draw.line([(self.px(x0), self.px(y)), (self.px(x1), self.px(y))], fill, stroke)

    def box(self, x0: float, y0: float, x1: float, y1: float, fill: Color) -> None:
        corners = [self.px(x0), self.px(y0), self.px(x1), self.px(y1)]
        self.draw.rectangle(corners, fill=fill)


def _noise(size: tuple[int, int], amplitude: int, seed: int, grain: int = 2) -> Image.Image:
    """Uniform noise in [0, 2*amplitude], in `grain`-pixel blobs (finer grain costs JPEG bytes)."""
    small = (size[0] // grain + 1, size[1] // grain + 1)
    data = random.Random(seed).randbytes(small[0] * small[1])
    noise = Image.frombytes("L", small, data).point(lambda v: v * 2 * amplitude // 255)
    return noise.resize((small[0] * grain, small[1] * grain), Image.Resampling.NEAREST).crop(
        (0, 0, *size)
    )


def scanned_pdf(page: Image.Image, *, seed: int, angle: float, title: str, dpi: int = 200) -> bytes:
    """A page image made to look scanned (gray paper, skew, noise, specks, JPEG) as an image PDF."""
    gray = page.convert("L").filter(ImageFilter.GaussianBlur(0.7))
    gray = gray.point(lambda v: 14 + v * 218 // 255)  # ink 14, paper 232
    gray = gray.rotate(angle, Image.Resampling.BICUBIC, fillcolor=232)
    gray = ImageChops.add(gray, _noise(gray.size, 7, seed), offset=-7)
    draw, rng = ImageDraw.Draw(gray), random.Random(seed + 1)
    for _ in range(40):  # dust specks
        x, y, r = rng.randrange(gray.width), rng.randrange(gray.height), rng.choice((1, 1, 2, 3))
        draw.ellipse((x, y, x + r, y + r), fill=rng.randrange(40, 140))
    buffer = io.BytesIO()
    stamp = PDF_DATE.timetuple()
    gray.save(
        buffer,
        "PDF",
        resolution=dpi,
        quality=40,
        title=title,
        creator=CREATOR,
        creationDate=stamp,
        modDate=stamp,
    )
    return buffer.getvalue()


def photographed_png(page: Image.Image, *, seed: int) -> bytes:
    """A page image made to look photographed: warm light falling off to one corner, slight tilt."""
    width, height = page.size
    # A light spot over the upper left, falling off towards the lower right corner.
    spot = Image.radial_gradient("L").resize((width * 2, height * 2), Image.Resampling.BILINEAR)
    light = spot.crop((width * 7 // 10, height * 8 // 10, width * 17 // 10, height * 18 // 10))
    light = light.point(lambda v: 255 - v * 50 // 255)  # 255 (lit) .. 205 (shadow)
    tint = Image.merge("RGB", [light.point(lambda v, k=k: v * k // 100) for k in (100, 97, 90)])
    photo = ImageChops.multiply(page, tint)
    photo = photo.rotate(-0.9, Image.Resampling.BICUBIC, fillcolor=(96, 84, 72))
    photo = ImageChops.add(photo, _noise(photo.size, 3, seed, grain=3).convert("RGB"), offset=-3)
    photo = photo.filter(ImageFilter.GaussianBlur(0.5)).quantize(96, dither=Image.Dither.NONE)
    buffer = io.BytesIO()
    photo.save(buffer, "PNG", optimize=True, dpi=(150, 150))
    return buffer.getvalue()
