"""Ingest: discovery order, magic-byte sniffing over extensions, hashing, refusals with a hash."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from PIL import Image

from pipeline.errors import ConfigError, InputError
from pipeline.ingest import RejectedFile, discover, hash_file, ingest_file, sniff_media_type
from pipeline.settings import RasterSettings
from pipeline.types import ErrorCategory

MINIMAL_PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"


def _png_bytes(tmp_path: Path) -> bytes:
    path = tmp_path / "made.png"
    Image.new("RGB", (4, 3), "red").save(path)
    return path.read_bytes()


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("scan.pdf", MINIMAL_PDF, "application/pdf"),
        ("junk-first.pdf", b"leading junk\n\n" + MINIMAL_PDF, "application/pdf"),
        ("photo.pdf", b"\xff\xd8\xff\xe0\x00\x10JFIF", "image/jpeg"),
        ("fax.dat", b"II*\x00\x08\x00\x00\x00", "image/tiff"),
        ("anim.bin", b"GIF89a\x01\x00\x01\x00", "image/gif"),
        ("pic", b"RIFF\x24\x00\x00\x00WEBPVP8 ", "image/webp"),
        ("bitmap.txt", b"BM\x3a\x00\x00\x00\x00\x00\x00\x00\x36\x00\x00\x00", "image/bmp"),
    ],
)
def test_sniff_uses_magic_bytes_not_the_extension(
    tmp_path: Path, name: str, content: bytes, expected: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    assert sniff_media_type(path) == expected


def test_png_named_pdf_is_a_png(tmp_path: Path) -> None:
    path = tmp_path / "invoice.pdf"
    path.write_bytes(_png_bytes(tmp_path))
    assert sniff_media_type(path) == "image/png"


@pytest.mark.parametrize(
    ("content", "looks_like"),
    [
        (b"<!DOCTYPE html><html><body>Login</body></html>", "HTML"),
        (b"\xef\xbb\xbf\n  <html lang='en'>", "HTML"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(100), "OLE2"),
        (b"PK\x03\x04" + bytes(30), "ZIP"),
        (b"oops\n", "plain text"),
        (b"\x00\x01\x02\xff\xfe" * 10, "binary"),
        (b"", "empty file"),
    ],
)
def test_non_documents_are_named(tmp_path: Path, content: bytes, looks_like: str) -> None:
    path = tmp_path / "invoice.pdf"
    path.write_bytes(content)
    with pytest.raises(InputError) as caught:
        sniff_media_type(path)
    assert caught.value.category is ErrorCategory.NOT_A_DOCUMENT
    assert looks_like in caught.value.message
    assert "'" + str(path) + "'" in caught.value.message  # quoted with !r


def test_pdf_header_after_1024_bytes_is_not_a_pdf(tmp_path: Path) -> None:
    path = tmp_path / "late.pdf"
    path.write_bytes(b"x" * 1024 + MINIMAL_PDF)  # poppler would not find it either
    with pytest.raises(InputError):
        sniff_media_type(path)


def test_hash_is_of_content_only(tmp_path: Path) -> None:
    content = MINIMAL_PDF * 5000  # several hash blocks
    (tmp_path / "a.pdf").write_bytes(content)
    (tmp_path / "b.bin").write_bytes(content)
    first, second = hash_file(tmp_path / "a.pdf"), hash_file(tmp_path / "b.bin")
    assert first == second == (hashlib.sha256(content).hexdigest(), len(content))


def test_ingest_file_accepts_a_pdf(tmp_path: Path) -> None:
    path = tmp_path / "doc.PDF"
    path.write_bytes(MINIMAL_PDF)
    file = ingest_file(path, RasterSettings())
    assert (file.path, file.media_type) == (path, "application/pdf")
    assert file.size_bytes == len(MINIMAL_PDF)
    assert file.sha256 == hashlib.sha256(MINIMAL_PDF).hexdigest()


@pytest.mark.parametrize(
    ("content", "settings", "category"),
    [
        (b"", RasterSettings(), ErrorCategory.NOT_A_DOCUMENT),
        (b"<html></html>", RasterSettings(), ErrorCategory.NOT_A_DOCUMENT),
        (MINIMAL_PDF, RasterSettings(max_file_bytes=10), ErrorCategory.TOO_LARGE),
    ],
)
def test_refused_files_still_carry_their_hash(
    tmp_path: Path, content: bytes, settings: RasterSettings, category: ErrorCategory
) -> None:
    path = tmp_path / "bad.pdf"
    path.write_bytes(content)
    with pytest.raises(RejectedFile) as caught:
        ingest_file(path, settings)
    assert caught.value.category is category
    assert (caught.value.sha256, caught.value.size_bytes) == hash_file(path)


def test_unreadable_file_is_an_io_error(tmp_path: Path) -> None:
    folder = tmp_path / "not-a-file.pdf"
    folder.mkdir()  # unreadable as a file even for root, unlike chmod 0
    with pytest.raises(InputError) as caught:
        ingest_file(folder, RasterSettings())
    assert caught.value.category is ErrorCategory.IO_ERROR
    assert "not-a-file.pdf" in caught.value.message


def _tree(root: Path) -> None:
    for relative in [
        "b.pdf",
        "a/z.png",
        "a/b/c.pdf",
        "a.pdf",
        "A.pdf",
        ".hidden.pdf",
        ".git/config.pdf",
        "c/d.tif",
    ]:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(MINIMAL_PDF + relative.encode())


def test_discover_recurses_sorted_and_skips_hidden(tmp_path: Path) -> None:
    _tree(tmp_path)
    found = [p.relative_to(tmp_path).as_posix() for p in discover([tmp_path])]
    assert found == ["A.pdf", "a/b/c.pdf", "a/z.png", "a.pdf", "b.pdf", "c/d.tif"]


def test_discover_keeps_given_files_in_order_and_drops_duplicates(tmp_path: Path) -> None:
    _tree(tmp_path)
    given = [tmp_path / "b.pdf", tmp_path / ".hidden.pdf", tmp_path / "a", tmp_path / "b.pdf"]
    found = [p.relative_to(tmp_path).as_posix() for p in discover(given)]
    assert found == ["b.pdf", ".hidden.pdf", "a/b/c.pdf", "a/z.png"]


def test_discover_survives_symlink_loops(tmp_path: Path) -> None:
    _tree(tmp_path)
    (tmp_path / "a" / "b" / "loop").symlink_to(tmp_path / "a", target_is_directory=True)
    (tmp_path / "self").symlink_to(tmp_path, target_is_directory=True)
    (tmp_path / "dangling.pdf").symlink_to(tmp_path / "nowhere.pdf")
    os.mkfifo(tmp_path / "pipe.pdf")  # reading it would block the batch
    found = [p.relative_to(tmp_path).as_posix() for p in discover([tmp_path])]
    assert found == ["A.pdf", "a/b/c.pdf", "a/z.png", "a.pdf", "b.pdf", "c/d.tif"]


def test_discover_missing_path_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "inbox" / "nope"
    with pytest.raises(ConfigError, match="nope"):
        discover([tmp_path, missing])


def test_discover_skips_sidecar_globs_in_folders_but_not_named_files(tmp_path: Path) -> None:
    (tmp_path / "a.pdf").write_bytes(b"%PDF-1.4\n")
    (tmp_path / "a.json").write_text("{}")
    (tmp_path / "notes.md").write_text("x")
    assert discover([tmp_path], skip=["*.json", "*.md"]) == [tmp_path / "a.pdf"]
    assert discover([tmp_path / "a.json"], skip=["*.json"]) == [tmp_path / "a.json"]
