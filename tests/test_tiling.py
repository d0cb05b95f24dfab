"""Tiling invariants on synthetic pages: text measurement, pinpoint shapes (no padding), cover,
overlap, budgets, token counts against the real LLaVA-NeXT processor, tiny geometry."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from pipeline.backends.random_llava import TINY_GEOMETRY
from pipeline.geometry import ImageGeometry, anyres_image_tokens, select_best_resolution
from pipeline.settings import TilingSettings
from pipeline.tiling import page_budget, tile_document, tile_page, whole_page_tokens
from pipeline.tiling.auto import REFERENCE_TILE_PX
from pipeline.tiling.textsize import measure_text, percentile_90
from pipeline.types import Box, Tile

A4 = (1654, 2339)  # 200 DPI
REAL = ImageGeometry()
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
BOLD = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
X_HEIGHT_EM = 0.547  # DejaVu Sans: 1120 of 2048 units
WORDS = ("invoice", "total", "cell", "culture", "flasks", "vented", "pipette", "tips", "tubes")


def text_page(
    rows: int, font_px: int = 28, size: tuple[int, int] = A4, top: int = 150
) -> Image.Image:
    """A white page with `rows` table rows of 10 pt-like text (28 px at 200 DPI) across the
    width of an invoice: number, description, quantity, price, amount."""
    rng = random.Random(rows * 1000 + font_px)
    page = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(page)
    font = ImageFont.truetype(FONT, font_px)
    for row in range(rows):
        y = top + row * round(font_px * 1.7)
        cells = {
            160: str(row + 1),
            230: " ".join(rng.choices(WORDS, k=3)).capitalize(),
            1000: str(rng.randint(1, 99)),
            1150: f"{rng.randint(100, 9999) / 100:,.2f}",
            1330: f"{rng.randint(100, 99999) / 100:,.2f}",
        }
        for x, text in cells.items():
            draw.text((x * size[0] // A4[0], y), text, fill="black", font=font)
    return page


@pytest.fixture(scope="module")
def dense() -> Image.Image:
    return text_page(44)  # rows down to the foot of the page, like a full invoice table


@pytest.fixture(scope="module")
def sparse() -> Image.Image:
    return text_page(6)  # a short letter: a few lines at the top


def inside(inner: Box, outer: Box, slack: int = 1) -> bool:
    return (
        inner[0] >= outer[0] - slack
        and inner[1] >= outer[1] - slack
        and inner[2] <= outer[2] + slack
        and inner[3] <= outer[3] + slack
    )


def cost(tiles: list[Tile]) -> int:
    return sum(t.image_tokens for t in tiles)


@pytest.mark.parametrize("font_px", [20, 28, 40])
def test_measured_x_height_matches_the_font(font_px: int) -> None:
    measure = measure_text(text_page(12, font_px))
    assert measure.x_height == pytest.approx(X_HEIGHT_EM * font_px, rel=0.15)
    assert measure.line_height is not None and measure.x_height is not None
    assert measure.line_height > measure.x_height
    assert len(measure.bands) == 12  # one band per line, the blank rows between them skipped


@pytest.mark.parametrize("geometry", [REAL, TINY_GEOMETRY], ids=["7b", "tiny"])
@pytest.mark.parametrize("strategy", ["auto", "grid"])
def test_tiles_have_pinpoint_shapes_so_the_processor_pads_nothing(
    dense: Image.Image, strategy: str, geometry: ImageGeometry
) -> None:
    tiles = tile_page(1, dense, TilingSettings(strategy=strategy), geometry)
    assert len(tiles) >= 2
    for tile in tiles:
        shape = (tile.image.height, tile.image.width)
        assert shape in geometry.grid_pinpoints
        assert select_best_resolution(*shape, geometry.grid_pinpoints) == shape
        assert tile.image_tokens == anyres_image_tokens(
            tile.image.width, tile.image.height, geometry
        )
        assert tile.page == 1 and not tile.is_global


def test_auto_shows_every_line_whole_in_some_tile(dense: Image.Image, sparse: Image.Image) -> None:
    for page in (dense, sparse):
        tiles = tile_page(1, page, TilingSettings(strategy="auto"), REAL)
        for band in measure_text(page).bands:
            assert any(inside(band, t.box) for t in tiles), f"line {band} is whole in no tile"


def table_page(header_top: int, rows: int = 20) -> Image.Image:
    """An invoice-like page: four address lines at the top, then at `header_top` a bold header
    row (# Description Qty Price Amount) and `rows` line items close below it."""
    page = text_page(rows, top=header_top + 60)
    draw = ImageDraw.Draw(page)
    font, bold = ImageFont.truetype(FONT, 28), ImageFont.truetype(BOLD, 28)
    for k, line in enumerate(("Corrib Cloud Services Ltd", "4 Parkmore Park", "Galway", "Ireland")):
        draw.text((160, 150 + k * 48), line, fill="black", font=font)
    header = {160: "#", 230: "Description", 1000: "Qty", 1150: "Price", 1330: "Amount"}
    for x, text in header.items():
        draw.text((x, header_top), text, fill="black", font=bold)
    return page


@pytest.mark.parametrize("header_top", range(600, 900, 25))
def test_auto_never_cuts_between_a_table_header_and_its_first_rows(header_top: int) -> None:
    page = table_page(header_top)
    bands = list(measure_text(page).bands)
    header = next(b for b in bands if b[1] >= header_top - 10)
    first_row = bands[bands.index(header) + 1]
    tiles = tile_page(1, page, TilingSettings(), REAL)
    assert any(inside(header, t.box) and inside(first_row, t.box) for t in tiles), (
        f"header {header} and first row {first_row} in no tile together: {[t.box for t in tiles]}"
    )


def test_auto_keeps_small_print_at_the_target_height(dense: Image.Image) -> None:
    settings = TilingSettings(strategy="auto", page_budget_vs_anyres=10)
    x_height = measure_text(dense).x_height
    assert x_height is not None
    whole = whole_page_tokens(*A4, settings, REAL)
    assert x_height * 672 / A4[1] < 5  # anyres: about 4 px, the problem this solves
    for tile in tile_page(1, dense, settings, REAL):
        scale = tile.image.height / (tile.box[3] - tile.box[1])
        assert x_height * scale >= 0.97 * settings.target_x_height_px
    assert cost(tile_page(1, dense, settings, REAL)) > whole


def test_dense_page_within_3x_anyres_and_sparse_page_cheaper(
    dense: Image.Image, sparse: Image.Image
) -> None:
    settings = TilingSettings()
    anyres = whole_page_tokens(*A4, settings, REAL)
    dense_cost = cost(tile_page(1, dense, settings, REAL))
    sparse_cost = cost(tile_page(1, sparse, settings, REAL))
    assert settings.strategy == "auto"
    assert anyres < dense_cost <= 3 * anyres
    assert sparse_cost < dense_cost
    assert sparse_cost < anyres  # a few lines at the top fit one strip


@pytest.mark.parametrize("strategy", ["auto", "grid"])
@pytest.mark.parametrize("budget", [3000, 4000, 6000, 9000])
def test_page_budget_is_respected(dense: Image.Image, strategy: str, budget: int) -> None:
    settings = TilingSettings(strategy=strategy, page_token_budget=budget)
    tiles = tile_page(1, dense, settings, REAL)
    assert cost(tiles) <= budget
    assert page_budget(*A4, settings, REAL) == budget


def test_budget_below_the_whole_page_gets_the_whole_page(dense: Image.Image) -> None:
    tiles = tile_page(1, dense, TilingSettings(page_token_budget=1000), REAL)
    assert len(tiles) == 1 and tiles[0].box == (0, 0, *A4)


def test_document_budget_is_shared_across_pages(dense: Image.Image, sparse: Image.Image) -> None:
    settings = TilingSettings(document_token_budget=9_000)
    pages = [(1, dense), (2, sparse), (3, dense)]
    per_page = [cost(t) for t in tile_document(pages, 3, settings, REAL)]
    assert sum(per_page) <= 9_000
    unlimited = [cost(t) for t in tile_document(pages, 3, TilingSettings(), REAL)]
    assert sum(unlimited) > 9_000  # the budget did bind


def test_grid_neighbours_overlap(dense: Image.Image) -> None:
    settings = TilingSettings(strategy="grid", grid_rows=2, grid_cols=2, page_token_budget=20_000)
    tiles = tile_page(1, dense, settings, REAL)
    assert len(tiles) == 4
    top_left, top_right, bottom_left, _ = (t.box for t in tiles)
    assert top_left[2] - top_right[0] >= 0.1 * A4[0] / 2
    assert top_left[3] - bottom_left[1] >= 0.1 * A4[1] / 2
    union = (
        min(t.box[0] for t in tiles),
        min(t.box[1] for t in tiles),
        max(t.box[2] for t in tiles),
        max(t.box[3] for t in tiles),
    )
    assert union == (0, 0, *A4)  # the grid covers the whole page


def test_blank_page_and_large_print_are_read_whole() -> None:
    for page in (Image.new("RGB", A4, "white"), text_page(5, font_px=90)):
        tiles = tile_page(1, page, TilingSettings(), REAL)
        assert len(tiles) == 1 and tiles[0].box == (0, 0, *A4)


def test_anyres_strategy_is_the_whole_page(dense: Image.Image) -> None:
    (tile,) = tile_page(1, dense, TilingSettings(strategy="anyres"), REAL)
    assert tile.box == (0, 0, *A4) and tile.image_tokens == 2256  # the notes' A4 figure


def test_global_view_comes_last_and_counts_in_the_budget(dense: Image.Image) -> None:
    settings = TilingSettings(global_view=True)
    tiles = tile_page(1, dense, settings, REAL)
    *parts, overview = tiles
    assert parts and not any(t.is_global for t in parts)
    assert overview.is_global and overview.box == (0, 0, *A4)
    assert cost(tiles) <= page_budget(*A4, settings, REAL)


def test_tiny_geometry_cuts_the_same_regions_at_a_sixth_of_the_size(dense: Image.Image) -> None:
    real = tile_page(1, dense, TilingSettings(), REAL)
    tiny = tile_page(1, dense, TilingSettings(), TINY_GEOMETRY)
    assert TINY_GEOMETRY.tile_size * 6 == REFERENCE_TILE_PX
    assert [t.box for t in tiny] == [t.box for t in real]
    assert [t.image.size for t in tiny] == [
        (w // 6, h // 6) for w, h in (t.image.size for t in real)
    ]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory):  # -> PreTrainedTokenizerFast
    from transformers import AutoTokenizer

    from pipeline.backends.random_llava import build_tiny_random

    folder = build_tiny_random(tmp_path_factory.mktemp("tiny") / "model")
    return AutoTokenizer.from_pretrained(folder, local_files_only=True)


@pytest.mark.parametrize("geometry", [REAL, TINY_GEOMETRY], ids=["7b", "tiny"])
def test_token_counts_equal_the_real_processor(
    tokenizer, dense: Image.Image, sparse: Image.Image, geometry: ImageGeometry
) -> None:
    from transformers import LlavaNextImageProcessorPil, LlavaNextProcessor

    side = geometry.tile_size
    processor = LlavaNextProcessor(
        image_processor=LlavaNextImageProcessorPil(
            size={"shortest_edge": side},
            crop_size={"height": side, "width": side},
            image_grid_pinpoints=[list(p) for p in geometry.grid_pinpoints],
        ),
        tokenizer=tokenizer,
        patch_size=geometry.patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )
    image_id = tokenizer.convert_tokens_to_ids("<image>")
    settings = [
        TilingSettings(),
        TilingSettings(strategy="grid"),
        TilingSettings(strategy="anyres"),
    ]
    tiles = [
        t for s in settings for page in (dense, sparse) for t in tile_page(1, page, s, geometry)
    ]
    for tile in tiles:
        out = processor(images=[tile.image], text=["<image>\nx"], return_tensors="np")
        assert int((out["input_ids"] == image_id).sum()) == tile.image_tokens


def test_boxes_are_in_page_pixels_inside_the_page(sparse: Image.Image) -> None:
    for strategy in ("auto", "grid", "anyres"):
        for tile in tile_page(3, sparse, TilingSettings(strategy=strategy), REAL):
            left, top, right, bottom = tile.box
            assert 0 <= left < right <= A4[0] and 0 <= top < bottom <= A4[1]
            assert tile.page == 3


def test_runs_of_ink_from_the_page_edges_are_background_not_content() -> None:
    page = text_page(12, 28)
    clean = measure_text(page)
    scanned = page.copy()
    draw = ImageDraw.Draw(scanned)
    draw.rectangle((0, 0, 24, page.height), fill="black")  # a scanner shadow down the left edge
    draw.polygon([(page.width, 0), (page.width - 120, 0), (page.width, 300)], fill="black")  # wedge
    draw.rectangle((0, page.height - 10, page.width, page.height), fill="black")  # bottom edge
    measured = measure_text(scanned)
    assert measured.x_height == clean.x_height
    assert measured.bands == clean.bands  # the dark edges add no content band and widen none


@pytest.mark.parametrize(
    "settings",
    [
        TilingSettings(),
        TilingSettings(strategy="grid"),
        TilingSettings(strategy="anyres"),
        TilingSettings(global_view=True),
    ],
    ids=["auto", "grid", "anyres", "global-view"],
)
def test_a_greyscale_page_gives_the_same_rgb_tiles_as_its_rgb_copy(
    dense: Image.Image, settings: TilingSettings
) -> None:
    """Pages without colour are cached as greyscale and cut as such (cheaper); the model must
    see exactly what it would have seen from the RGB page, white margins past the edge too."""
    grey = dense.convert("L")
    from_rgb = tile_page(1, grey.convert("RGB"), settings, REAL)
    from_grey = tile_page(1, grey, settings, REAL)
    assert [t.box for t in from_grey] == [t.box for t in from_rgb]
    assert [t.image_tokens for t in from_grey] == [t.image_tokens for t in from_rgb]
    for ours, theirs in zip(from_grey, from_rgb, strict=True):
        assert ours.image.mode == "RGB" and ours.image.tobytes() == theirs.image.tobytes()


def test_percentile_90_is_numpys_bit_for_bit() -> None:
    rng = np.random.default_rng(7)
    for length in [1, 2, 3, 9, 10, 11, 19, 20, 21, 57, 300]:
        for _ in range(40):
            values = rng.integers(0, rng.choice([3, 40, 2000]), size=length)
            assert percentile_90(values) == float(np.percentile(values, 90)), values
