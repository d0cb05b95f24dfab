"""`docextract tiles`: what the vision tower receives, for debugging ("what does the model see?").

For each request of a page it writes the tile as handed to the processor, then the processor's
output as images (the global view, every tile-size crop, and the crops stitched back), plus
`tiles.json` with boxes in page pixels and image-token counts. bench/legibility.py reads the
same files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pipeline.cli.common import (
    app,
    build_settings,
    cli_overrides,
    console,
    err_console,
    exits_cleanly,
)
from pipeline.errors import ConfigError, InputError
from pipeline.settings import Settings

if TYPE_CHECKING:
    from PIL import Image

    from pipeline.geometry import ImageGeometry
    from pipeline.types import PageImage, Tile

MANIFEST = "tiles.json"


@app.command("tiles")
@exits_cleanly
def tiles(
    file: Annotated[Path, typer.Argument(help="A PDF or image file.")],
    out: Annotated[Path, typer.Option("--out", help="Folder to write the images and tiles.json.")],
    page: Annotated[
        int | None, typer.Option("--page", min=1, help="Only this page (1-based).")
    ] = None,
    strategy: Annotated[
        str | None, typer.Option(help="Tiling strategy: auto (default), grid, anyres.")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="Model whose image geometry to use (default llava-next-7b)."),
    ] = None,
    dpi: Annotated[int | None, typer.Option(help="Rendering resolution for PDF pages.")] = None,
    global_view: Annotated[
        bool | None,
        typer.Option("--global-view/--no-global-view", help="Add each page's whole-page view."),
    ] = None,
) -> None:
    """Write, for each request, the images exactly as the vision tower will receive them."""
    overrides = cli_overrides(model=model, tiling=strategy, global_view=global_view, dpi=dpi)
    settings = build_settings(None, **overrides)
    try:
        manifest = export_tiles(file, settings, out, page=page)
    except InputError as exc:
        err_console.print(f"[bold red]cannot read[/] {str(file)!r}: {exc.message}")
        raise typer.Exit(1) from None
    for entry in manifest["pages"]:
        console.print(
            f"page {entry['page']}: {len(entry['requests'])} request(s), "
            f"{entry['image_tokens']} image tokens (anyres: {entry['anyres_tokens']})"
        )
    console.print(f"wrote {out / MANIFEST}")


def export_tiles(
    path: Path, settings: Settings, out: Path, *, page: int | None = None
) -> dict[str, Any]:
    """Rasterize `path`, tile it with `settings.tiling`, write every request's encoder inputs
    into `out`, and return (and write) the manifest. `page` (1-based) limits it to one page.

    Pages that fail to render are listed under "errors". Raises InputError when the file (or
    the page asked for) cannot be read, ConfigError for a page past the end.
    """
    from pipeline.backends import create_model
    from pipeline.ingest import ingest_file
    from pipeline.pages import prepare_raster
    from pipeline.render.raster import rasterize
    from pipeline.tiling import tile_document

    if not path.is_file():
        raise ConfigError(f"no such file: {str(path)!r}")
    geometry = create_model(settings).geometry
    file = ingest_file(path, settings.raster)
    raster = prepare_raster(
        rasterize(file, settings.raster, settings.page_cache_dir), settings.pages
    )
    if page is not None and page > raster.page_count:
        raise ConfigError(
            f"--page {page} is past the last page of {str(path)!r} ({raster.page_count} pages)"
        )
    pages = [p for p in raster.pages if page is None or p.number == page]
    failed = [e for e in raster.errors if page is None or e.page == page]
    if failed and not pages:
        raise InputError(failed[0].category, failed[0].message, failed[0].page)
    images = ((p.number, _open(p)) for p in pages)  # one page in memory at a time
    entries = []
    for rendered, page_tiles in zip(
        pages, tile_document(images, len(pages), settings.tiling, geometry), strict=True
    ):
        entries.append(_page_entry(rendered, page_tiles, settings, geometry, out))
    manifest = {
        "file": str(path),
        "sha256": file.sha256,
        "model": settings.model.name,
        "geometry": {
            "tile_size": geometry.tile_size,
            "patch_size": geometry.patch_size,
            "grid_pinpoints": [list(p) for p in geometry.grid_pinpoints],
        },
        "tiling": settings.tiling.model_dump(),
        "pages": entries,
        "errors": [e.to_json() for e in failed],  # pages that did not render
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest


def _open(page: PageImage) -> Image.Image:
    from PIL import Image

    with Image.open(page.path) as image:
        return image.convert("RGB")


def _page_entry(
    page: PageImage, tiles: list[Tile], settings: Settings, geometry: ImageGeometry, out: Path
) -> dict[str, Any]:
    from PIL import Image

    from pipeline.tiling import whole_page_tokens
    from pipeline.tiling.inspect import encoder_view, write_view
    from pipeline.tiling.textsize import measure_text

    with Image.open(page.path) as image:
        x_height = measure_text(image).x_height
    out.mkdir(parents=True, exist_ok=True)
    requests = []
    for index, tile in enumerate(tiles, start=1):
        stem = f"p{page.number:03d}-r{index:02d}"
        tile.image.save(out / f"{stem}-input.png")
        view = encoder_view(tile.image, geometry)
        scale = _encoder_scale(tile, view.content_box)
        requests.append(
            {
                "request": index,
                "page": tile.page,
                "box": list(tile.box),
                "is_global": tile.is_global,
                "input": f"{stem}-input.png",
                "input_size": [tile.image.width, tile.image.height],
                "pinpoint": list(view.pinpoint),
                "crop_grid": list(view.grid),
                "content_box": list(view.content_box),
                "image_tokens": tile.image_tokens,
                "scale": round(scale, 4),
                "encoder_x_height_px": round(x_height * scale, 1) if x_height else None,
                "files": write_view(view, out, stem),
            }
        )
    return {
        "page": page.number,
        "image": str(page.path),
        "width": page.width,
        "height": page.height,
        "dpi": page.dpi,
        "text_x_height_px": x_height,
        "image_tokens": sum(t.image_tokens for t in tiles),
        "anyres_tokens": whole_page_tokens(page.width, page.height, settings.tiling, geometry),
        "requests": requests,
    }


def _encoder_scale(tile: Tile, content_box: tuple[int, int, int, int]) -> float:
    """Encoder pixels per page pixel: page -> tile image (the smaller ratio, since a box clipped
    at the page edge is narrower than the image it fills) times the processor's own resize."""
    box_w, box_h = tile.box[2] - tile.box[0], tile.box[3] - tile.box[1]
    to_tile = min(tile.image.width / box_w, tile.image.height / box_h)
    return to_tile * (content_box[2] - content_box[0]) / tile.image.width
