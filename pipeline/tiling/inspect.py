"""What the vision tower receives for one image: the processor's own steps, replayed.

`encoder_view` runs transformers' `LlavaNextImageProcessorPil`, configured with the model's
geometry (tile size, grid pinpoints) and with rescaling and normalisation switched off, so its
`pixel_values` are the very pixels the tower gets, as 8-bit images: the global view (the whole
image squashed to one tile) and the tile-size crops of the image resized and padded to its best
pinpoint. Used by `docextract tiles` and by bench/legibility.py. Imports transformers (and so
torch) when called, never at import time.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.geometry import ImageGeometry
from pipeline.types import Box


@dataclass(frozen=True)
class EncoderView:
    """The images the vision tower gets for one input image, in the processor's order.

    `pinpoint` is the (height, width) the image was resized and padded to, `grid` its
    (rows, columns) of crops, `crops` those crops row by row, `content_box` the part of the
    padded canvas the image fills (the rest is the processor's black padding, whose features the
    model drops again).
    """

    global_view: Image.Image
    crops: tuple[Image.Image, ...]
    pinpoint: tuple[int, int]
    grid: tuple[int, int]
    content_box: Box

    @property
    def canvas(self) -> Image.Image:
        """The crops stitched back into the resized, padded image: the spatial layout the
        language model sees once the crop features are joined (with a newline per row)."""
        side = self.crops[0].width
        rows, cols = self.grid
        canvas = Image.new("RGB", (cols * side, rows * side))
        for index, crop in enumerate(self.crops):
            canvas.paste(crop, ((index % cols) * side, (index // cols) * side))
        return canvas


# transformers is imported on first use (it takes seconds), and its lazy modules are not safe to
# import from several threads at once (the legibility bench cuts pages in a thread pool).
_TRANSFORMERS_IMPORT = threading.Lock()


def encoder_view(image: Image.Image, geometry: ImageGeometry) -> EncoderView:
    """Run the real LLaVA-NeXT image processor on `image` and return its output as images."""
    with _TRANSFORMERS_IMPORT:
        from transformers import LlavaNextImageProcessorPil
        from transformers.image_processing_utils import (
            get_patch_output_size,
            select_best_resolution,
        )
        from transformers.image_utils import ChannelDimension

    side = geometry.tile_size
    processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": side},
        crop_size={"height": side, "width": side},
        image_grid_pinpoints=[list(p) for p in geometry.grid_pinpoints],
        do_rescale=False,
        do_normalize=False,
    )
    rgb = image.convert("RGB")
    patches = processor(images=[rgb], return_tensors=None)["pixel_values"][0]
    images = [Image.fromarray(np.ascontiguousarray(p.transpose(1, 2, 0))) for p in patches]
    pin_h, pin_w = select_best_resolution(
        (rgb.height, rgb.width), [list(p) for p in geometry.grid_pinpoints]
    )
    new_h, new_w = get_patch_output_size(
        np.zeros((1, rgb.height, rgb.width)), (pin_h, pin_w), ChannelDimension.FIRST
    )
    left, top = (pin_w - new_w) // 2, (pin_h - new_h) // 2
    return EncoderView(
        global_view=images[0],
        crops=tuple(images[1:]),
        pinpoint=(int(pin_h), int(pin_w)),
        grid=(pin_h // side, pin_w // side),
        content_box=(left, top, left + new_w, top + new_h),
    )


def write_view(view: EncoderView, folder: Path, stem: str) -> dict[str, object]:
    """Write `view` as PNGs named `{stem}-global.png`, `{stem}-crop01.png`, ... and
    `{stem}-canvas.png` into `folder`; return those file names by role."""
    folder.mkdir(parents=True, exist_ok=True)
    names: dict[str, object] = {"global": f"{stem}-global.png", "canvas": f"{stem}-canvas.png"}
    view.global_view.save(folder / f"{stem}-global.png")
    view.canvas.save(folder / f"{stem}-canvas.png")
    crops = []
    for index, crop in enumerate(view.crops, start=1):
        crops.append(f"{stem}-crop{index:02d}.png")
        crop.save(folder / crops[-1])
    names["crops"] = crops
    return names
