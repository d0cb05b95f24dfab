"""Rasterize: real poppler/pdfium/Pillow renders of small generated files, through the sandbox.

PDF tests run with each primary renderer (`renderer`): both must give the same pages, sizes,
errors and fallbacks."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pypdfium2 as pdfium
import pytest
from conftest import SHARED
from fpdf import FPDF
from fpdf.enums import EncryptionMethod
from PIL import Image, ImageChops, ImageOps, ImageStat

from pipeline.errors import InputError
from pipeline.ingest import IngestedFile, ingest_file
from pipeline.render import client as render_client
from pipeline.render import raster
from pipeline.render.raster import page_cache_path, rasterize
from pipeline.settings import RasterSettings
from pipeline.types import ErrorCategory, PageImage

CORPUS = SHARED / "corpus" / "robustness"  # DOCEXTRACT_TEST_SHARED in a git worktree
LETTER = (612, 792)
A5_LANDSCAPE = (595.28, 419.53)
RENDERERS = ["poppler", "pdfium"]
OTHER = {"poppler": "pdfium", "pdfium": "poppler"}


def make_pdf(path: Path, sizes: list[tuple[float, float]], password: str | None = None) -> Path:
    """A PDF with one page per size (points), each with a line of text and a filled box."""
    pdf = FPDF(unit="pt")
    pdf.set_font("helvetica", size=24)
    for number, size in enumerate(sizes, start=1):
        pdf.add_page(format=size)
        pdf.text(40, 60, f"Page {number}")
        pdf.rect(40, 80, 100, 50, style="F")
    if password:
        pdf.set_encryption(
            owner_password="owner-" + password,
            user_password=password,
            encryption_method=EncryptionMethod.AES_128,
        )
    pdf.output(str(path))
    return path


def rotate_pages(path: Path, rotations: list[int]) -> Path:
    """Set each page's /Rotate (degrees clockwise) in place."""
    doc = pdfium.PdfDocument(path.read_bytes())
    for index, rotation in enumerate(rotations):
        doc[index].set_rotation(rotation)
    doc.save(path)
    doc.close()
    return path


def ingest(path: Path, settings: RasterSettings | None = None) -> IngestedFile:
    return ingest_file(path, settings or RasterSettings())


@pytest.fixture(params=RENDERERS)
def renderer(request: pytest.FixtureRequest) -> str:
    """The primary PDF renderer; the other one is the fallback."""
    return str(request.param)


def settings_for(renderer: str, **values: Any) -> RasterSettings:
    return RasterSettings(renderer=renderer, **values)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every request sent to a render worker, in order, with the pid of the worker it went to."""
    requests: list[dict[str, Any]] = []
    real = render_client.WorkerRun

    class Spy(real):  # type: ignore[misc, valid-type]
        def run(self, request: dict[str, Any], deadline: Any) -> Any:
            requests.append({**request, "pid": self._proc.pid})
            return super().run(request, deadline)

    monkeypatch.setattr(render_client, "WorkerRun", Spy)
    return requests


def render_steps(requests: list[dict[str, Any]]) -> list[tuple[str, list[int]]]:
    return [
        (step["renderer"], [n for n, _ in step["pages"]])
        for r in requests
        if r["op"] == "render"
        for step in r["steps"]
    ]


def test_pdf_pages_render_at_the_dpi_with_their_own_sizes(tmp_path: Path, renderer: str) -> None:
    pdf = make_pdf(tmp_path / "mixed.pdf", [LETTER, A5_LANDSCAPE, (200, 100)])
    file = ingest(pdf)
    result = rasterize(file, settings_for(renderer, dpi=50), tmp_path / "cache")
    assert result.page_count == 3 and result.errors == []
    for page, (width_pt, height_pt) in zip(
        result.pages, [LETTER, A5_LANDSCAPE, (200, 100)], strict=True
    ):
        assert page.dpi == 50
        assert (page.width, page.height) == (
            math.ceil(width_pt * 50 / 72),
            math.ceil(height_pt * 50 / 72),
        )
        assert page.path == page_cache_path(tmp_path / "cache", file.sha256, page.number, 50)
        with Image.open(page.path) as im:
            # black print on white: stored as 8-bit grey (read back as RGB, the same pixels)
            assert (im.mode, im.size) == ("L", (page.width, page.height))
            assert im.getextrema()[0] < 50  # the black box is there: not a blank page
    leftovers = [p.name for p in page.path.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # temp chunk folders and tmp files are gone


@pytest.mark.parametrize("dpi", [44, 88, 194])
def test_page_sizes_are_exact_where_pdfium_rounds_up(
    tmp_path: Path, renderer: str, dpi: int
) -> None:
    """pypdfium2's render(scale=dpi/72) gives a Letter page 1 px more at these DPIs."""
    pdf = make_pdf(tmp_path / "letter.pdf", [LETTER])
    settings = settings_for(renderer, dpi=dpi, fallback_renderer="none")
    page = rasterize(ingest(pdf), settings, tmp_path / "cache").pages[0]
    assert (page.width, page.height) == (math.ceil(612 * dpi / 72), math.ceil(792 * dpi / 72))


def test_both_renderers_draw_the_same_upright_page(tmp_path: Path) -> None:
    pdf = rotate_pages(make_pdf(tmp_path / "turned.pdf", [LETTER, LETTER]), [90, 0])
    drawn = {}
    for renderer in RENDERERS:
        settings = settings_for(renderer, dpi=40, fallback_renderer="none")
        result = rasterize(ingest(pdf), settings, tmp_path / renderer)
        assert [(p.width, p.height, p.rotation) for p in result.pages] == [
            (440, 340, 90),  # landscape: /Rotate applied
            (340, 440, 0),
        ]
        with Image.open(result.pages[0].path) as im:
            drawn[renderer] = im.convert("L")
    mean = ImageStat.Stat(ImageChops.difference(drawn["poppler"], drawn["pdfium"])).mean[0]
    assert mean < 4, f"the renderers disagree on the page: mean grey difference {mean:.1f}"


def test_one_worker_describes_and_renders_a_document(
    tmp_path: Path, spy: list[dict[str, Any]], renderer: str
) -> None:
    rasterize(
        ingest(make_pdf(tmp_path / "doc.pdf", [LETTER] * 3)),
        settings_for(renderer, dpi=36),
        tmp_path / "c",
    )
    assert [r["op"] for r in spy] == ["info", "render"]
    assert spy[0]["pid"] == spy[1]["pid"]  # one process start per document, not one per request


def test_second_rasterize_renders_nothing(
    tmp_path: Path, spy: list[dict[str, Any]], renderer: str
) -> None:
    file = ingest(make_pdf(tmp_path / "doc.pdf", [LETTER] * 3))
    settings = settings_for(renderer, dpi=40)
    first = rasterize(file, settings, tmp_path / "cache")
    assert [r["op"] for r in spy] == ["info", "render"]
    mtimes = [p.path.stat().st_mtime_ns for p in first.pages]
    second = rasterize(file, settings, tmp_path / "cache")
    assert len(spy) == 2  # no subprocess at all the second time
    assert [(p.number, p.path, p.width, p.height, p.dpi) for p in second.pages] == [
        (p.number, p.path, p.width, p.height, p.dpi) for p in first.pages
    ]
    assert [p.path.stat().st_mtime_ns for p in second.pages] == mtimes
    first.pages[1].path.unlink()  # one page evicted: only that one is rendered again
    rasterize(file, settings, tmp_path / "cache")
    assert render_steps(spy[2:]) == [(renderer, [2])]


def test_switching_renderers_keeps_the_cache(
    tmp_path: Path, spy: list[dict[str, Any]], renderer: str
) -> None:
    file = ingest(make_pdf(tmp_path / "doc.pdf", [LETTER] * 2))
    rasterize(file, settings_for(OTHER[renderer], dpi=40), tmp_path / "cache")
    assert raster.cache_complete(file, settings_for(renderer, dpi=40), tmp_path / "cache")
    rasterize(file, settings_for(renderer, dpi=40), tmp_path / "cache")
    assert len(spy) == 2  # the other renderer's pages and page list serve as they are
    alone = settings_for(renderer, dpi=40, fallback_renderer="none")
    assert not raster.cache_complete(file, alone, tmp_path / "cache")
    rasterize(file, alone, tmp_path / "cache")  # described again by the only renderer allowed
    assert [r["op"] for r in spy[2:]] == ["info"]


def test_a_damaged_cached_page_is_rendered_again(
    tmp_path: Path, spy: list[dict[str, Any]], renderer: str
) -> None:
    file = ingest(make_pdf(tmp_path / "doc.pdf", [LETTER] * 2))
    settings = settings_for(renderer, dpi=40)
    first = rasterize(file, settings, tmp_path / "cache")
    first.pages[0].path.write_bytes(b"not a png")
    second = rasterize(file, settings, tmp_path / "cache")
    assert render_steps(spy[2:]) == [(renderer, [1])]
    assert (second.pages[0].width, second.pages[0].height) == (
        first.pages[0].width,
        first.pages[0].height,
    )


def test_pages_render_in_chunks_after_the_first_page_alone(
    tmp_path: Path, spy: list[dict[str, Any]], renderer: str
) -> None:
    file = ingest(make_pdf(tmp_path / "six.pdf", [LETTER] * 6))
    result = rasterize(file, settings_for(renderer, dpi=36, chunk_pages=2), tmp_path / "cache")
    assert [p.number for p in result.pages] == [1, 2, 3, 4, 5, 6]
    steps = [[1], [2, 3], [4, 5], [6]]  # the model can start on page 1 sooner
    assert render_steps(spy) == [(renderer, pages) for pages in steps]


def test_pixel_cap_lowers_the_dpi_of_that_page_only(tmp_path: Path, renderer: str) -> None:
    file = ingest(make_pdf(tmp_path / "two.pdf", [LETTER, (200, 200)]))
    settings = settings_for(renderer, dpi=200, max_page_pixels=1_000_000)
    big, small = rasterize(file, settings, tmp_path / "cache").pages
    assert big.dpi == 103  # the largest DPI whose letter page fits 1 MP: 876 x 1133 px
    one_dpi_more = math.ceil(612 * 104 / 72) * math.ceil(792 * 104 / 72)
    assert big.width * big.height <= 1_000_000 < one_dpi_more
    assert big.path.name == "p0001-103dpi.png"
    assert (small.dpi, small.width) == (200, math.ceil(200 * 200 / 72))


def test_more_pages_than_max_pages_is_too_large(tmp_path: Path, renderer: str) -> None:
    file = ingest(make_pdf(tmp_path / "five.pdf", [LETTER] * 5))
    with pytest.raises(InputError) as caught:
        rasterize(file, settings_for(renderer, max_pages=3), tmp_path / "cache")
    assert caught.value.category is ErrorCategory.TOO_LARGE
    assert "max_pages=3" in caught.value.message


@pytest.mark.parametrize("fallback", ["auto", "none"])
def test_render_memory_cap_fails_as_too_large_not_a_crash(
    tmp_path: Path, renderer: str, fallback: str
) -> None:
    file = ingest(make_pdf(tmp_path / "poster.pdf", [(5000, 5000)]))  # 13889 px square at 200 DPI
    settings = settings_for(
        renderer,
        dpi=200,
        max_page_pixels=10**9,
        render_memory_mb=256,
        fallback_renderer=fallback,
    )
    with pytest.raises(InputError) as caught:
        rasterize(file, settings, tmp_path / "cache")
    assert caught.value.category is ErrorCategory.TOO_LARGE
    assert "RENDER_MEMORY_MB" in caught.value.message
    assert not list((tmp_path / "cache").rglob("*.png"))  # poppler's 1x1 stand-in is not cached


def test_encrypted_pdf_needs_its_password(tmp_path: Path, renderer: str) -> None:
    file = ingest(make_pdf(tmp_path / "locked.pdf", [LETTER], password="s3cret"))
    for fallback in ("auto", "none"):
        settings = settings_for(renderer, dpi=36, fallback_renderer=fallback)
        for password, hint in [(None, "needs its password"), ("wrong", "password given")]:
            with pytest.raises(InputError) as caught:
                rasterize(file, settings, tmp_path / "cache", password=password)
            assert caught.value.category is ErrorCategory.PASSWORD_REQUIRED
            assert hint in caught.value.message
    settings = settings_for(renderer, dpi=36, fallback_renderer="none")
    assert len(rasterize(file, settings, tmp_path / "cache", password="s3cret").pages) == 1
    with pytest.raises(InputError):  # cached pages are not served without the password
        rasterize(file, settings, tmp_path / "cache")


def test_password_given_for_an_open_pdf_is_ignored(tmp_path: Path, renderer: str) -> None:
    file = ingest(make_pdf(tmp_path / "open.pdf", [LETTER]))
    settings = settings_for(renderer, dpi=36, fallback_renderer="none")
    assert len(rasterize(file, settings, tmp_path / "c", password="x").pages) == 1


def test_a_pdf_of_blank_pages_renders_them(tmp_path: Path, renderer: str) -> None:
    """pdfium sees no content on any page and asks poppler whether there are pages at all."""
    pdf = FPDF(unit="pt")
    pdf.add_page(format=LETTER)
    pdf.add_page(format=LETTER)
    pdf.output(str(tmp_path / "blank.pdf"))
    result = rasterize(ingest(tmp_path / "blank.pdf"), settings_for(renderer, dpi=36), tmp_path)
    assert [(p.number, p.width) for p in result.pages] == [(1, 306), (2, 306)]


def _tiff(path: Path) -> Path:
    frames = [
        Image.new("1", (300, 400), 1),
        Image.new("L", (500, 200), 128),
        Image.new("RGB", (100, 100), "blue"),
    ]
    frames[0].save(path, save_all=True, append_images=frames[1:], compression="tiff_deflate")
    return path


def test_multi_page_tiff_gives_one_page_per_frame(tmp_path: Path) -> None:
    file = ingest(_tiff(tmp_path / "fax.tif"))
    assert file.media_type == "image/tiff"
    result = rasterize(file, RasterSettings(), tmp_path / "cache")
    assert [(p.number, p.width, p.height) for p in result.pages] == [
        (1, 300, 400),
        (2, 500, 200),
        (3, 100, 100),
    ]
    with Image.open(result.pages[2].path) as im:
        assert im.mode == "RGB" and im.getpixel((0, 0)) == (0, 0, 255)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    stored = Image.new("RGB", (60, 20), "white")
    stored.paste((255, 0, 0), (0, 0, 10, 10))  # red mark at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    stored.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    page = rasterize(ingest(tmp_path / "phone.jpg"), RasterSettings(), tmp_path / "cache").pages[0]
    assert (page.width, page.height, page.rotation) == (20, 60, 90)
    with Image.open(page.path) as im:
        red, green, _ = im.getpixel((15, 5))  # the mark is now at the top-right
        assert red > 200 and green < 60


@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"robustness corpus not found at {CORPUS}")
def test_exif_orientation_on_the_corpus_photo(tmp_path: Path) -> None:
    source = CORPUS / "pillow-hopper_orientation_6.jpg"
    page = rasterize(ingest(source), RasterSettings(), tmp_path / "cache").pages[0]
    with Image.open(source) as raw, Image.open(page.path) as rendered:
        upright = ImageOps.exif_transpose(raw)
        assert page.rotation == 90
        assert rendered.tobytes() == upright.convert("RGB").tobytes()
        assert rendered.tobytes() != raw.convert("RGB").tobytes()


def test_image_over_the_pixel_cap_is_too_large(tmp_path: Path) -> None:
    Image.new("L", (1100, 1000), 255).save(tmp_path / "big.png")
    with pytest.raises(InputError) as caught:
        rasterize(
            ingest(tmp_path / "big.png"),
            RasterSettings(max_page_pixels=1_000_000),
            tmp_path / "cache",
        )
    assert caught.value.category is ErrorCategory.TOO_LARGE


def test_truncated_image_is_corrupt(tmp_path: Path) -> None:
    Image.effect_noise((200, 200), 64).save(tmp_path / "full.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "full.png").read_bytes()[:5000])
    with pytest.raises(InputError) as caught:
        rasterize(ingest(tmp_path / "cut.png"), RasterSettings(), tmp_path / "cache")
    assert caught.value.category is ErrorCategory.CORRUPT


def test_tiny_timeout_is_render_timeout(tmp_path: Path, renderer: str) -> None:
    file = ingest(make_pdf(tmp_path / "doc.pdf", [LETTER]))
    with pytest.raises(InputError) as caught:
        rasterize(file, settings_for(renderer, render_timeout_s=0.001), tmp_path / "cache")
    assert caught.value.category is ErrorCategory.RENDER_TIMEOUT
    assert "render_timeout_s" in caught.value.message


def test_chunk_timeout_retries_with_the_fallback_then_fails_the_pages(
    tmp_path: Path, spy: list[dict[str, Any]], renderer: str
) -> None:
    file = ingest(make_pdf(tmp_path / "doc.pdf", [LETTER] * 3))
    rasterize(file, settings_for(renderer, dpi=36), tmp_path / "cache")  # caches the page list
    slow = settings_for(renderer, dpi=600, render_timeout_s=0.2, chunk_pages=2)
    with pytest.raises(InputError) as caught:
        rasterize(file, slow, tmp_path / "cache")
    assert caught.value.category is ErrorCategory.RENDER_TIMEOUT
    tried = {(name, tuple(pages)) for name, pages in render_steps(spy[2:])}
    other = OTHER[renderer]
    assert tried == {
        (renderer, (1,)),  # the first page alone, then chunks
        (renderer, (2, 3)),
        (other, (1,)),
        (other, (2,)),
        (other, (3,)),
    }
    doc_dir = raster.document_cache_dir(tmp_path / "cache", file.sha256)
    assert [p.name for p in doc_dir.iterdir() if p.name.startswith(".")] == []  # killed: cleaned


def test_document_timeout_bounds_the_whole_document(tmp_path: Path, renderer: str) -> None:
    file = ingest(make_pdf(tmp_path / "doc.pdf", [LETTER] * 4))
    settings = settings_for(renderer, dpi=600, chunk_pages=1, document_timeout_s=0.5)
    with pytest.raises(InputError) as caught:
        rasterize(file, settings, tmp_path / "cache")
    assert caught.value.category is ErrorCategory.RENDER_TIMEOUT


@pytest.fixture
def fake_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    def install(script: str) -> None:
        path = tmp_path / "fake_worker.py"
        path.write_text(script)
        monkeypatch.setattr(render_client, "worker_argv", lambda: [sys.executable, str(path)])

    return install


@pytest.mark.parametrize(
    ("script", "category", "words"),
    [
        (
            "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)",
            ErrorCategory.RENDER_CRASH,
            "SIGSEGV",
        ),
        (
            "import os, signal; os.kill(os.getpid(), signal.SIGKILL)",
            ErrorCategory.RENDER_CRASH,
            "SIGKILL",
        ),
        ("raise MemoryError()", ErrorCategory.TOO_LARGE, "RENDER_MEMORY_MB"),
        (
            "import sys; sys.stdin.readline(); print('not json')",
            ErrorCategory.RENDER_CRASH,
            "not json",
        ),
        ("import sys; sys.exit(3)", ErrorCategory.RENDER_CRASH, "status 3"),
    ],
)
def test_a_dying_worker_is_an_input_error(
    tmp_path: Path,
    fake_worker: Callable[[str], None],
    script: str,
    category: ErrorCategory,
    words: str,
) -> None:
    file = ingest(make_pdf(tmp_path / "doc.pdf", [LETTER]))
    fake_worker(script)
    with pytest.raises(InputError) as caught:
        rasterize(file, RasterSettings(), tmp_path / "cache")
    assert caught.value.category is category
    assert words in caught.value.message


CRASH_ON_PAGE_2 = """
import json, os, signal, sys
from pipeline.render import worker as render_worker
def emit(event, **fields):
    print(json.dumps({"event": event, **fields}), flush=True)
for line in sys.stdin:
    request = json.loads(line)
    steps = request.get("steps", [])
    for index, step in enumerate(steps):
        if step["renderer"] == PRIMARY and any(n == 2 for n, _ in step["pages"]):
            if index:  # the steps before it render, as in the real worker
                render_worker.handle({**request, "steps": steps[:index]}, emit)
            emit("step", index=index)
            os.kill(os.getpid(), signal.SIGSEGV)
    render_worker.handle(request, emit)
    emit("done")
"""


@pytest.mark.parametrize("fallback", ["auto", "none"])
def test_a_crash_mid_document_fails_that_chunk_and_the_rest_go_on(
    tmp_path: Path,
    fake_worker: Callable[[str], None],
    spy: list[dict[str, Any]],
    renderer: str,
    fallback: str,
) -> None:
    file = ingest(make_pdf(tmp_path / "five.pdf", [LETTER] * 5))
    fake_worker(f"PRIMARY = {renderer!r}\n" + CRASH_ON_PAGE_2)
    settings = settings_for(renderer, dpi=36, chunk_pages=2, fallback_renderer=fallback)
    result = rasterize(file, settings, tmp_path / "cache")
    if fallback == "auto":
        assert [p.number for p in result.pages] == [1, 2, 3, 4, 5] and result.errors == []
        assert (OTHER[renderer], [2]) in render_steps(spy)
    else:
        assert [p.number for p in result.pages] == [1, 4, 5]  # steps [1] [2, 3] [4, 5]
        assert [(e.page, e.category) for e in result.errors] == [
            (2, ErrorCategory.RENDER_CRASH),
            (3, ErrorCategory.RENDER_CRASH),
        ]


def test_fallback_naming_the_primary_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="FALLBACK_RENDERER"):
        RasterSettings(renderer="pdfium", fallback_renderer="pdfium")
    assert RasterSettings(renderer="poppler", fallback_renderer="pdfium").fallback == "pdfium"
    assert RasterSettings(renderer="pdfium").fallback == "poppler"
    assert RasterSettings(renderer="pdfium", fallback_renderer="none").fallback is None


def test_the_worker_starts_without_loading_a_renderer() -> None:
    """Each document starts a worker: its imports are part of every document's cost."""
    heavy = ["PIL", "pdf2image", "pypdfium2", "concurrent.futures", "numpy"]
    probe = f"import sys, pipeline.render.worker; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cache_paths_come_from_the_hash_only(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sha256"):
        page_cache_path(tmp_path, "../../etc/passwd", 1, 200)
    sha = "ab" + "0" * 62
    assert page_cache_path(tmp_path, sha, 7, 150) == tmp_path / "ab" / sha / "p0007-150dpi.png"


@pytest.mark.parametrize(
    ("width_pt", "height_pt", "dpi", "max_pixels"),
    [
        (612, 792, 200, 1_000_000),
        (1.5, 1000, 2000, 1_000_000),
        (14400, 14400, 600, 40_000_000),
        (32, 32, 200, 1_000_000),
        (10**7, 10**7, 200, 1_000_000),
    ],
)
def test_fit_dpi_is_the_largest_dpi_that_fits(
    width_pt: float, height_pt: float, dpi: int, max_pixels: int
) -> None:
    def pixels(d: int) -> int:
        return math.ceil(width_pt * d / 72) * math.ceil(height_pt * d / 72)

    fitting = [d for d in range(1, dpi + 1) if pixels(d) <= max_pixels]
    expected = max(fitting) if fitting else None
    assert raster.fit_dpi(width_pt, height_pt, dpi, max_pixels) == expected


def test_each_page_is_handed_on_as_it_lands_in_the_cache(tmp_path: Path, renderer: str) -> None:
    pdf = make_pdf(tmp_path / "five.pdf", [LETTER] * 5)
    file, cache = ingest(pdf), tmp_path / "cache"
    settings = settings_for(renderer, dpi=40, chunk_pages=2)
    handed: list[tuple[int, int, bool]] = []

    def on_page(page: PageImage, page_count: int) -> None:
        handed.append((page.number, page_count, page.path.exists()))

    result = rasterize(file, settings, cache, on_page=on_page)
    assert sorted(handed) == [(n, 5, True) for n in range(1, 6)]
    assert sorted(p.number for p in result.pages) == [1, 2, 3, 4, 5]
    result.pages[1].path.unlink()  # page 2 must render again, the others come from the cache
    handed.clear()
    rasterize(file, settings, cache, on_page=on_page)
    assert [n for n, _, _ in handed] == [1, 3, 4, 5, 2]


def test_pages_without_colour_are_stored_grey_and_read_back_unchanged(tmp_path: Path) -> None:
    pdf = FPDF(unit="pt")
    pdf.set_font("helvetica", size=24)
    for colour in [(0, 0, 0), (200, 30, 30)]:
        pdf.add_page(format=LETTER)
        pdf.set_fill_color(*colour)
        pdf.rect(40, 80, 100, 50, style="F")
        pdf.text(40, 60, "Total 12.50")
    pdf.output(str(tmp_path / "two.pdf"))
    cache = tmp_path / "cache"
    settings = RasterSettings(renderer="pdfium", dpi=72)
    result = rasterize(ingest(tmp_path / "two.pdf"), settings, cache)
    direct = [pdfium.PdfDocument(tmp_path / "two.pdf")[i].render(scale=1).to_pil() for i in (0, 1)]
    modes = []
    for page, reference in zip(result.pages, direct, strict=True):
        with Image.open(page.path) as stored:
            modes.append(stored.mode)
            as_rgb = stored.convert("RGB")
        assert as_rgb.tobytes() == reference.convert("RGB").tobytes()  # not a pixel lost
    assert modes == ["L", "RGB"]  # the red box keeps the second page in colour
