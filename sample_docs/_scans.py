"""What a mailroom scanner does to a sheet, for tests and benches of the pages stage
(`pipeline.pages`): grey paper, sensor noise, dust, JPEG, a dark edge where the sheet ends, punch
holes, the faint mirror image of the other side (bleed-through), tilt and turned pages.

Not used by `generate.py`: nothing here is written into sample_docs/.
"""

from __future__ import annotations

import io
import random

from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageOps


def scan(
    page: Image.Image,
    *,
    seed: int,
    tilt: float = 0.0,
    turn: int = 0,
    edge: bool = False,
    holes: bool = False,
    bleed: Image.Image | None = None,
    quality: int = 40,
) -> Image.Image:
    """`page` as a grey scan: tilted by `tilt` degrees (counter-clockwise), turned `turn` degrees
    clockwise (a sheet fed sideways or upside down), with noise, dust and JPEG; `edge` adds the
    dark band of the scanner lid beside a sheet fed off-centre, `holes` two punch holes, `bleed`
    the other side showing through."""
    rng = random.Random(seed)
    grey = page.convert("L").filter(ImageFilter.GaussianBlur(0.7))
    grey = grey.point(lambda v: 14 + v * 218 // 255)  # ink 14, paper 232
    if bleed is not None:
        ghost = ImageOps.mirror(bleed.convert("L").resize(grey.size)).point(
            lambda v: 255 - (255 - v) * 40 // 255  # the other side at about 15% of its ink
        )
        grey = ImageChops.multiply(grey, ghost)
    grey = grey.rotate(tilt, Image.Resampling.BICUBIC, fillcolor=232)
    noise = Image.frombytes("L", grey.size, rng.randbytes(grey.width * grey.height))
    grey = ImageChops.add(grey, noise.point(lambda v: v * 16 // 255), offset=-8)
    draw = ImageDraw.Draw(grey)
    for _ in range(60):  # dust specks, a few of them clumped
        x, y = rng.randrange(grey.width), rng.randrange(grey.height)
        r = rng.choice((1, 1, 2, 3, 4))
        draw.ellipse((x, y, x + r, y + r), fill=rng.randrange(30, 150))
    dpi_mm = grey.width / 210
    if holes:
        for y in (0.3, 0.7):
            cx, cy, r = 12 * dpi_mm, y * grey.height, 3 * dpi_mm
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=25)
    if edge:
        width = int(6 * dpi_mm)
        draw.rectangle((grey.width - width, 0, grey.width, grey.height), fill=40)
        for y in range(0, grey.height, 8):  # a ragged boundary
            draw.line((grey.width - width - rng.randrange(4), y, grey.width - width, y), 60)
    if turn:
        grey = grey.rotate(-turn, expand=True)
    buffer = io.BytesIO()
    grey.save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("L")


def white_sheet(dpi: int = 200) -> Image.Image:
    """An empty A4 sheet at `dpi`."""
    return Image.new("L", (round(210 / 25.4 * dpi), round(297 / 25.4 * dpi)), 255)
