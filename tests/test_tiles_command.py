"""`docextract tiles` writes what the vision tower receives; `run --tiling`; the tiny-random
model reads auto tiles through the real processor and generate()."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _extract import extract_final
from PIL import Image, ImageChops
from typer.testing import CliRunner

from pipeline.backends import create_model
from pipeline.backends.scripted import ScriptedModel, empty_record_json
from pipeline.cli import app
from pipeline.geometry import anyres_image_tokens
from pipeline.ingest import ingest_file
from pipeline.render.raster import rasterize
from pipeline.settings import Settings
from pipeline.tiling import tile_page
from pipeline.types import Status
from schemas.invoice import Invoice

REPO = Path(__file__).resolve().parent.parent
TWO_PAGE = REPO / "sample_docs" / "invoice-two-page.pdf"


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, shared_cache_dir: Path) -> CliRunner:
    monkeypatch.setenv("DOCEXTRACT_CACHE_DIR", str(shared_cache_dir))
    return CliRunner()


def tiles(runner: CliRunner, out: Path, *args: str) -> dict:
    result = runner.invoke(app, ["tiles", str(TWO_PAGE), "--out", str(out), *args])
    assert result.exit_code == 0, result.output
    return json.loads((out / "tiles.json").read_text())


def same_pixels(a: Image.Image, b: Image.Image) -> bool:
    return (
        a.size == b.size
        and ImageChops.difference(a.convert("RGB"), b.convert("RGB")).getbbox() is None
    )


def test_tiles_writes_each_request_as_the_vision_tower_receives_it(
    runner: CliRunner, tmp_path: Path
) -> None:
    manifest = tiles(runner, tmp_path, "--page", "2")
    assert manifest["tiling"]["strategy"] == "auto" and manifest["geometry"]["tile_size"] == 336
    (page,) = manifest["pages"]
    assert page["page"] == 2 and (page["width"], page["height"]) == (1654, 2339)
    assert page["image_tokens"] == sum(r["image_tokens"] for r in page["requests"])
    assert page["image_tokens"] < 3 * page["anyres_tokens"]
    for request in page["requests"]:
        files = request["files"]
        width, height = request["input_size"]
        assert request["pinpoint"] == [height, width], "tile shaped like its pinpoint"
        assert request["image_tokens"] == anyres_image_tokens(width, height)
        rows, cols = request["crop_grid"]
        assert len(files["crops"]) == rows * cols
        for name in [*files["crops"], files["global"]]:
            with Image.open(tmp_path / name) as crop:
                assert crop.size == (336, 336)
        with (
            Image.open(tmp_path / request["input"]) as given,
            Image.open(tmp_path / files["canvas"]) as seen,
        ):
            assert same_pixels(given, seen), "no resize, no padding: the crops are the tile"
        assert request["encoder_x_height_px"] >= 7 * 0.97  # the default target
        left, top, right, bottom = request["box"]
        assert 0 <= left < right <= 1654 and 0 <= top < bottom <= 2339


def test_anyres_shows_the_whole_page_shrunk_and_padded(runner: CliRunner, tmp_path: Path) -> None:
    manifest = tiles(runner, tmp_path, "--strategy", "anyres")
    assert [len(p["requests"]) for p in manifest["pages"]] == [1, 1]
    request = manifest["pages"][0]["requests"][0]
    assert request["box"] == [0, 0, 1654, 2339] and request["image_tokens"] == 2256
    assert (
        request["pinpoint"] == [672, 672]
        and request["content_box"][2] - request["content_box"][0] < 672
    )
    assert request["encoder_x_height_px"] < 5  # 10 pt text at about 57 DPI


def test_global_view_is_an_extra_request(runner: CliRunner, tmp_path: Path) -> None:
    manifest = tiles(runner, tmp_path, "--page", "1", "--global-view")
    *parts, overview = manifest["pages"][0]["requests"]
    assert parts and overview["is_global"] and overview["box"] == [0, 0, 1654, 2339]


def test_tiles_reports_a_page_past_the_end_and_a_non_document(
    runner: CliRunner, tmp_path: Path
) -> None:
    result = runner.invoke(app, ["tiles", str(TWO_PAGE), "--page", "9", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "past the last page" in result.output
    text = tmp_path / "notes.txt"
    text.write_text("not a document")
    result = runner.invoke(app, ["tiles", str(text), "--out", str(tmp_path)])
    assert result.exit_code == 1 and "cannot read" in result.output
    result = runner.invoke(
        app, ["tiles", str(TWO_PAGE), "--strategy", "mosaic", "--out", str(tmp_path)]
    )
    assert result.exit_code == 2 and "strategy" in result.output


def test_run_passes_the_tiling_option_to_the_flow(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_url: str
) -> None:
    import flows.extract

    seen: dict = {}

    def fake_run(paths, overrides, settings):  # type: ignore[no-untyped-def]
        seen.update(overrides=overrides, strategy=settings.tiling.strategy)
        return []

    monkeypatch.setattr(flows.extract, "run_extraction", fake_run)
    args = ["run", str(TWO_PAGE), "--model", "tiny-random", "--db", sqlite_url, "--json"]
    result = runner.invoke(app, [*args, "--tiling", "grid"])
    assert result.exit_code == 0, result.output
    assert seen == {
        "overrides": {  # no --schema: routed (auto)
            "schemas": ["auto"],
            "model": {"name": "tiny-random"},
            "tiling": {"strategy": "grid"},
        },
        "strategy": "grid",
    }
    result = runner.invoke(app, [*args, "--tiling", "mosaic"])
    assert result.exit_code == 2 and "mosaic" in result.output
    assert Settings().tiling.strategy == "auto", "auto is the default"


def test_tiny_random_reads_auto_tiles_end_to_end(shared_cache_dir: Path) -> None:
    """The real processor and generate() on auto tiles at the tiny model's 1/6 geometry: one
    call per tile, each costing exactly the image tokens the tiler planned."""
    settings = Settings(
        cache_dir=shared_cache_dir,
        model={"name": "tiny-random", "device": "cpu", "dtype": "float32", "max_new_tokens": 384},
    )
    raster = rasterize(
        ingest_file(TWO_PAGE, settings.raster), settings.raster, settings.page_cache_dir
    )
    page = raster.pages[1]
    model = create_model(settings)
    with Image.open(page.path) as image:
        planned = tile_page(page.number, image.convert("RGB"), settings.tiling, model.geometry)
    result = extract_final([page], Invoice, model, settings)
    assert settings.tiling.strategy == "auto" and len(planned) >= 2
    assert result.status in (Status.SUCCEEDED, Status.NEEDS_REVIEW), result.errors
    Invoice.model_validate(result.record)
    first = [c for c in result.calls if c.attempt == 0]
    assert [c.box for c in first] == [t.box for t in planned]
    assert [c.image_tokens for c in first] == [t.image_tokens for t in planned]  # counted


def test_tiles_reports_exactly_the_requests_extraction_sends(
    runner: CliRunner, tmp_path: Path, shared_cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One budget loop: a whole document through `docextract tiles` and through `extract()`
    (a scripted model keeping each request) gives the same tiles in the same order at the same
    sizes, under a document budget that makes the pages compete for tokens."""
    monkeypatch.setenv("DOCEXTRACT_TILING__DOCUMENT_TOKEN_BUDGET", "9000")
    monkeypatch.setenv("DOCEXTRACT_TILING__GLOBAL_VIEW", "true")
    manifest = tiles(runner, tmp_path / "tiles")
    shown = [
        (r["page"], tuple(r["box"]), tuple(r["input_size"]))
        for page in manifest["pages"]
        for r in page["requests"]
    ]
    settings = Settings(cache_dir=shared_cache_dir, extraction={"max_reasks": 0})
    assert settings.tiling.document_token_budget == 9000 and settings.tiling.global_view
    raster = rasterize(
        ingest_file(TWO_PAGE, settings.raster), settings.raster, settings.page_cache_dir
    )
    model = ScriptedModel(lambda request, number: empty_record_json(request.json_schema))
    result = extract_final(raster.pages, Invoice, model, settings)
    assert len(shown) > 2
    assert [(c.page, tuple(c.box)) for c in result.calls] == [(p, b) for p, b, _ in shown]
    sent = sorted(request.images[0].size for request in model.requests)
    assert sent == sorted(size for *_, size in shown)
