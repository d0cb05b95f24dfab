"""Every file of the robustness corpus ends in rendered pages or the InputError its manifest entry
asks for, within its time limit. Files are read from ../shared/corpus/robustness, never copied.

Each file runs with each primary PDF renderer and the other as fallback (the supported set-ups),
and each PDF also with each renderer alone (`fallback_renderer="none"`), to pin what each one
does by itself. EXPECTED pins one outcome per file, read from each entry's `expected_behaviour`;
where the manifest allows two ("render or fail cleanly"), the comment says which one we give and
why. ALONE lists where a renderer alone ends otherwise. With a fallback, both primaries end every
file the same way, and every PDF that renders was described by the primary itself.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest
from PIL import Image

from pipeline.errors import InputError
from pipeline.ingest import PDF, ingest_file
from pipeline.render.raster import RasterResult, document_cache_dir, rasterize
from pipeline.settings import RasterSettings
from pipeline.types import ErrorCategory

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus" / "robustness"
MANIFEST = CORPUS / "manifest.json"
# 72 DPI keeps the run short; outcomes do not depend on DPI (caps are checked at default values).
LIMITS: dict[str, Any] = {"dpi": 72, "render_timeout_s": 20, "document_timeout_s": 30}
MODES = {
    "poppler": RasterSettings(renderer="poppler", **LIMITS),
    "pdfium": RasterSettings(renderer="pdfium", **LIMITS),
    "poppler-alone": RasterSettings(renderer="poppler", fallback_renderer="none", **LIMITS),
    "pdfium-alone": RasterSettings(renderer="pdfium", fallback_renderer="none", **LIMITS),
}


@dataclass(frozen=True)
class Renders:
    pages: int


@dataclass(frozen=True)
class Fails:
    category: ErrorCategory


C = ErrorCategory
EXPECTED: dict[str, Renders | Fails] = {
    "pypdf-r4-aes-user-password.pdf": Fails(C.PASSWORD_REQUIRED),  # opens with its password
    "pypdf-r6-owner-password.pdf": Renders(1),
    "qpdf-leading-junk.pdf": Renders(30),
    "qpdf-bad-xref.pdf": Renders(1),
    "qpdf-zero-offset.pdf": Renders(1),
    "qpdf-append-xref-loop.pdf": Renders(30),
    "qpdf-recover-xref-stream.pdf": Renders(1),
    "qpdf-issue-146.pdf": Fails(C.CORRUPT),
    "qpdf-damaged-stream.pdf": Renders(1),
    "qpdf-broken-lzw.pdf": Renders(1),
    "qpdf-bad-jpeg.pdf": Renders(1),
    "qpdf-empty.pdf": Fails(C.ZERO_PAGES),
    "qpdf-many-nulls.pdf": Fails(C.ZERO_PAGES),  # pdfium would draw a page poppler says is absent
    "qpdf-pages-loop.pdf": Renders(1),
    "qpdf-deep-pages.pdf": Fails(C.CORRUPT),  # "render or fail": its one page is 0 x 0 pt
    "qpdf-bad1.pdf": Fails(C.NOT_A_DOCUMENT),
    "qpdf-issue-335b.pdf": Fails(C.NOT_A_DOCUMENT),
    "qpdf-fxo-bigsmall.pdf": Renders(2),
    "qpdf-to-rotate.pdf": Renders(20),
    "qpdf-fax-decode-parms.pdf": Renders(10),
    "qpdf-png-filters.pdf": Renders(12),
    "qpdf-image-streams-small.pdf": Renders(9),
    "qpdf-large-inline-image.pdf": Renders(1),
    "pillow-g4-multi.tiff": Renders(3),
    "pillow-total-pages-zero.tif": Renders(3),
    "pillow-pport_g4.tif": Renders(1),
    "pillow-tiff_strip_cmyk_jpeg.tif": Renders(1),
    "pillow-tiff_16bit_RGBa.tiff": Renders(1),
    "pillow-16bit.MM.deflate.tif": Renders(1),
    "pillow-hopper.Lab.tif": Renders(1),  # "convert to RGB or fail": Pillow converts LAB
    "pillow-pil_sample_cmyk.jpg": Renders(1),
    "pillow-hopper_orientation_6.jpg": Renders(1),
    "pillow-i_trns.png": Renders(1),
    "pillow-transparent_background_text.png": Renders(1),
    "pillow-uncompressed_la.png": Renders(1),
    "pillow-truncated_image.png": Fails(C.CORRUPT),
    "pillow-truncated_jpeg.jpg": Fails(C.CORRUPT),  # "fail or decode partially": never half grey
    "pillow-broken.png": Fails(C.CORRUPT),
    "pillow-decompression_bomb.gif": Fails(C.TOO_LARGE),
    "derived-truncated-Seige_of_Vicksburg.pdf": Fails(C.CORRUPT),  # neither renderer recovers
    "derived-truncated-pdflatex-4-pages.pdf": Fails(C.CORRUPT),  # pages: same
    "derived-word-ole-named.pdf": Fails(C.NOT_A_DOCUMENT),
    "derived-jpeg-named.pdf": Renders(1),  # "fail, or detect the real type": it is a JPEG
    "derived-html-named.pdf": Fails(C.NOT_A_DOCUMENT),
    "generated-empty-0-bytes.pdf": Fails(C.NOT_A_DOCUMENT),
}
ALONE: dict[str, dict[str, Renders | Fails]] = {
    "poppler-alone": {},  # pdfium is never needed on this corpus
    "pdfium-alone": {
        "qpdf-empty.pdf": Fails(C.CORRUPT),  # "fail cleanly": pdfium says "Data format error"
        # NOT what the manifest accepts ("fail cleanly / produce zero records"): pdfium reads the
        # tree of nulls as one blank Letter page, which would reach the model. With poppler as
        # fallback it is asked and says 0 pages; why pdfium is not run alone by default.
        "qpdf-many-nulls.pdf": Renders(1),
    },
}


def _entries(alone: bool = False) -> list[Any]:
    """(mode, manifest entry) for every file with each primary renderer; with `alone`, for every
    `.pdf` with each renderer alone."""
    if not MANIFEST.is_file():
        return [pytest.param(None, None, id="corpus-missing")]  # the test says why it cannot run
    files = json.loads(MANIFEST.read_text())["files"]
    modes = ["poppler-alone", "pdfium-alone"] if alone else ["poppler", "pdfium"]
    return [
        pytest.param(mode, entry, id=f"{mode}-{entry['name']}")
        for mode in modes
        for entry in files
        if not alone or entry["name"].endswith(".pdf")
    ]


def _outcome(
    path: Path, settings: RasterSettings, cache: Path, password: str | None = None
) -> tuple[Renders | Fails, RasterResult | None, str]:
    try:
        file = ingest_file(path, settings)
        result = rasterize(file, settings, cache, password=password)
    except InputError as exc:
        return Fails(exc.category), None, ""
    assert result.errors == [], f"{path.name}: unexpected page errors {result.errors}"
    assert [p.number for p in result.pages] == list(range(1, result.page_count + 1))
    if file.media_type == PDF and password is None:
        info = json.loads((document_cache_dir(cache, file.sha256) / "info.json").read_text())
        assert info["renderer"] == settings.renderer, f"{path.name}: the fallback described it"
    return Renders(len(result.pages)), result, file.sha256


def _pixels(result: RasterResult, page: int = 0) -> Image.Image:
    with Image.open(result.pages[page].path) as im:
        assert im.mode in ("RGB", "L")  # L: a page without colour (see render_common.save_png)
        return im.convert("RGB")


def _check_rotation(result: RasterResult, entry: dict[str, Any]) -> None:
    rotations = [270, 270] + [0] * 8 + [90] * 5 + [180, 180] + [0] * 3  # from `special`
    assert [p.rotation for p in result.pages] == rotations
    for page in result.pages:  # upright per /Rotate: quarter turns give landscape pages
        assert (page.width > page.height) == (page.rotation in (90, 270))


def _check_own_sizes(result: RasterResult, entry: dict[str, Any]) -> None:
    first, second = result.pages
    assert (first.width, first.height) == (612, 792)
    assert (second.width, second.height) == (306, 396)


def _check_not_clipped(result: RasterResult, entry: dict[str, Any]) -> None:
    low, high = _pixels(result).convert("L").getextrema()
    assert 0 < low < high < 255  # 16-bit grey scaled, not clipped to black/white


def _check_text_visible(result: RasterResult, entry: dict[str, Any]) -> None:
    low, high = _pixels(result).convert("L").getextrema()
    assert high - low > 200  # white text on a transparent sheet must not vanish


def _check_on_white(result: RasterResult, entry: dict[str, Any]) -> None:
    assert _pixels(result).getpixel((0, 0)) == (255, 255, 255)


def _check_exif(result: RasterResult, entry: dict[str, Any]) -> None:
    assert result.pages[0].rotation == 90


def _check_size(width: int, height: int) -> Callable[[RasterResult, dict[str, Any]], None]:
    def check(result: RasterResult, entry: dict[str, Any]) -> None:
        assert {(p.width, p.height) for p in result.pages} == {(width, height)}

    return check


CHECKS: dict[str, Callable[[RasterResult, dict[str, Any]], None]] = {
    "qpdf-to-rotate.pdf": _check_rotation,
    "qpdf-fxo-bigsmall.pdf": _check_own_sizes,
    "pillow-16bit.MM.deflate.tif": _check_not_clipped,
    "pillow-transparent_background_text.png": _check_text_visible,
    "pillow-uncompressed_la.png": _check_on_white,
    "pillow-tiff_16bit_RGBa.tiff": _check_on_white,
    "pillow-hopper_orientation_6.jpg": _check_exif,
    "pillow-g4-multi.tiff": _check_size(3307, 4677),
    "qpdf-leading-junk.pdf": _check_size(612, 792),
}


def _corpus_missing() -> NoReturn:
    """Fail (as the PostgreSQL tests do) unless the skip is asked for explicitly."""
    reason = f"robustness corpus not found at {CORPUS} (needs ../shared next to the repo)"
    if os.environ.get("DOCEXTRACT_TEST_SKIP_CORPUS") == "1":
        pytest.skip(reason)
    pytest.fail(f"{reason}; set DOCEXTRACT_TEST_SKIP_CORPUS=1 to skip these tests explicitly")


@pytest.mark.parametrize(("mode", "entry"), _entries() + _entries(alone=True))
def test_corpus_file_ends_as_its_manifest_expects(
    mode: str | None, entry: dict[str, Any] | None, tmp_path: Path
) -> None:
    if mode is None or entry is None:
        _corpus_missing()
    name, settings = entry["name"], MODES[mode]
    started = time.monotonic()
    outcome, result, sha256 = _outcome(CORPUS / name, settings, tmp_path)
    elapsed = time.monotonic() - started
    expected = ALONE.get(mode, {}).get(name, EXPECTED[name])
    assert outcome == expected, f"{mode}, {name}: manifest says {entry['expected_behaviour']!r}"
    assert elapsed < settings.document_timeout_s
    if result is not None:
        assert sha256 == entry["sha256"]
        for page in result.pages:
            assert page.path.is_file() and page.path.parent.name == sha256
        CHECKS.get(name, lambda result, entry: None)(result, entry)


@pytest.mark.parametrize(
    ("mode", "entry"),
    [p for p in _entries(alone=True) if p.values[1] is None or p.values[1].get("passwords")],
)
def test_passwords_from_the_manifest_open_the_encrypted_files(
    mode: str | None, entry: dict[str, Any] | None, tmp_path: Path
) -> None:
    if mode is None or entry is None:
        _corpus_missing()
    for password in entry["passwords"].values():
        outcome, _, _ = _outcome(CORPUS / entry["name"], MODES[mode], tmp_path, password=password)
        assert outcome == Renders(1), f"{mode}: {entry['name']} with {password!r}"


def test_the_table_covers_exactly_the_manifest() -> None:
    if not MANIFEST.is_file():
        _corpus_missing()
    names = {entry["name"] for entry in json.loads(MANIFEST.read_text())["files"]}
    assert names == set(EXPECTED)


def test_bomb_is_refused_before_allocation(tmp_path: Path) -> None:
    bomb = CORPUS / "pillow-decompression_bomb.gif"
    if not bomb.is_file():
        _corpus_missing()
    started = time.monotonic()
    with pytest.raises(InputError) as caught:
        rasterize(ingest_file(bomb, RasterSettings()), RasterSettings(), tmp_path)
    assert caught.value.category is ErrorCategory.TOO_LARGE
    assert "max_page_pixels" in caught.value.message
    assert time.monotonic() - started < 5  # 4.4 gigapixels were never decoded
