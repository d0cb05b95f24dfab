"""Ingest: find the files of an inbox, hash them, and sniff their real type from magic bytes.

Nothing here trusts a file name or extension: the type comes from the first bytes, the identity
from the sha256 of the content. Every check that can fail on a file raises `InputError` (recorded
as that document's status); a path the user gave that does not exist raises `ConfigError`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

from pipeline.errors import ConfigError, InputError
from pipeline.settings import RasterSettings
from pipeline.types import ErrorCategory

log = logging.getLogger(__name__)

SNIFF_BYTES = 1024  # poppler accepts a %PDF- header anywhere in the first 1024 bytes
_HASH_BLOCK = 1 << 20

PDF = "application/pdf"
IMAGE_TYPES = frozenset(
    {"image/png", "image/jpeg", "image/tiff", "image/gif", "image/webp", "image/bmp"}
)

# (prefix, media type) for the types we render, checked in order.
_DOCUMENT_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
    (b"II+\x00", "image/tiff"),  # BigTIFF
    (b"MM\x00+", "image/tiff"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)

# (prefix, what it looks like) for common things that land in an inbox but are not documents.
_OTHER_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "a Microsoft Office (OLE2) file, e.g. Word .doc"),
    (b"PK\x03\x04", "a ZIP archive (or DOCX/XLSX/ODT)"),
    (b"{\\rtf", "an RTF document"),
    (b"%!PS", "PostScript"),
    (b"\x1f\x8b", "gzip-compressed data"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"\x7fELF", "an executable (ELF)"),
)


@dataclass(frozen=True)
class IngestedFile:
    """A file accepted for rasterization. `size_bytes` in bytes, `sha256` as 64 hex digits."""

    path: Path
    sha256: str
    media_type: str
    size_bytes: int


class RejectedFile(InputError):
    """An `InputError` for a file that was hashed before it was refused.

    Carries `sha256` and `size_bytes`, so the caller can register the Document row of a bad file
    and record its failure by hash like any other document.
    """

    def __init__(
        self, category: ErrorCategory, message: str, *, path: Path, sha256: str, size_bytes: int
    ) -> None:
        super().__init__(category, message)
        self.path = path
        self.sha256 = sha256
        self.size_bytes = size_bytes


@dataclass(frozen=True)
class Skipped:
    """A path under an inbox that discovery did not take, and why (for the run summary)."""

    path: Path
    reason: str


@dataclass(frozen=True)
class Discovery:
    """What `discover_all` found: files to ingest, and everything else it met, with reasons."""

    files: list[Path]
    skipped: list[Skipped]


def discover(
    paths: Sequence[Path], skip: Sequence[str] = (), *, follow_outside: bool = False
) -> list[Path]:
    """The files of `discover_all`; what it skipped is logged as warnings."""
    return discover_all(paths, skip, follow_outside=follow_outside).files


def discover_all(
    paths: Sequence[Path], skip: Sequence[str] = (), *, follow_outside: bool = False
) -> Discovery:
    """Expand files and folders into a deterministic list of files, and what was passed over.

    Files given explicitly are kept as given (even hidden ones); folders are recursed in sorted
    order, skipping hidden entries (names starting with ".") and names matching a `skip` glob
    (sidecar files such as ground-truth `*.json`) silently. Everything else that is not taken
    is a `Skipped` with its reason, and the walk goes on: FIFOs, sockets and devices (reading
    them could block), dangling symlinks, symlink loops, unreadable folders, and symlinks that
    lead out of the folder given (to `/etc/shadow`, say) unless `follow_outside`. Symlinked
    folders inside are followed once, so a link loop cannot recurse forever. Duplicates (the
    same real file reached twice) are dropped.

    Raises `ConfigError` naming the first path that does not exist or is neither file nor folder.
    """
    found: list[Path] = []
    skipped: list[Skipped] = []
    seen_files: set[Path] = set()
    for given in paths:
        given = Path(given)
        if not given.exists():
            raise ConfigError(f"input path {str(given)!r} does not exist; check the inbox path")
        if given.is_dir():
            walk = _Walk(given.resolve(), tuple(skip), follow_outside, skipped)
            candidates: Iterator[Path] = walk.files(given)
        elif given.is_file():
            candidates = iter([given])
        else:
            raise ConfigError(
                f"input path {str(given)!r} is neither a regular file nor a folder; "
                "pass documents or folders of documents"
            )
        for path in candidates:
            real = path.resolve()
            if real not in seen_files:
                seen_files.add(real)
                found.append(path)
    for item in skipped:
        log.warning("skipped %r: %s", str(item.path), item.reason)
    return Discovery(found, skipped)


_SPECIAL = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


@dataclass
class _Walk:
    """One folder given on the command line, walked depth first, names sorted."""

    root: Path  # resolved
    skip: tuple[str, ...]
    follow_outside: bool
    skipped: list[Skipped]

    def files(self, folder: Path, visited: set[tuple[int, int]] | None = None) -> Iterator[Path]:
        """Yield regular files under `folder`; each real folder once."""
        visited = set() if visited is None else visited
        st = folder.stat()
        key = (st.st_dev, st.st_ino)
        if key in visited:  # a symlink loop or a second link to a folder already walked
            return
        visited.add(key)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            self._skip(folder, f"cannot list the folder: {exc.strerror or exc}")
            return
        for entry in entries:
            if entry.name.startswith(".") or any(fnmatch(entry.name, g) for g in self.skip):
                continue
            path = Path(entry.path)
            try:
                mode = os.stat(path).st_mode  # follows symlinks
            except FileNotFoundError:
                self._skip(path, "a symlink to nothing (dangling)")
                continue
            except OSError as exc:  # ELOOP: a chain of links that ends where it started
                self._skip(path, f"cannot read it: {exc.strerror or exc}")
                continue
            if entry.is_symlink() and not self._inside(path):
                continue
            if stat.S_ISDIR(mode):
                yield from self.files(path, visited)
            elif stat.S_ISREG(mode):
                yield path
            else:
                what = next((w for test, w in _SPECIAL if test(mode)), "not a regular file")
                self._skip(path, f"{what}, not a file; reading it could block the run")

    def _inside(self, link: Path) -> bool:
        if self.follow_outside or link.resolve().is_relative_to(self.root):
            return True
        self._skip(
            link,
            "a symlink that leads out of the inbox; not followed (set "
            "DOCEXTRACT_INBOX_FOLLOW_OUTSIDE=true to follow such links)",
        )
        return False

    def _skip(self, path: Path, reason: str) -> None:
        self.skipped.append(Skipped(path, reason))


def hash_file(path: Path) -> tuple[str, int]:
    """Return `(sha256 hex, size in bytes)`, reading the file in 1 MiB blocks (memory stays flat).

    Raises `InputError(IO_ERROR)` when the file cannot be read.
    """
    digest = hashlib.sha256()
    size = 0
    try:
        with open(path, "rb") as fh:
            while block := fh.read(_HASH_BLOCK):
                digest.update(block)
                size += len(block)
    except FileNotFoundError as exc:
        raise InputError(
            ErrorCategory.IO_ERROR,
            f"{str(path)!r} vanished after it was found (moved or deleted meanwhile); "
            "nothing is recorded for it",
        ) from exc
    except OSError as exc:
        raise InputError(
            ErrorCategory.IO_ERROR, f"cannot read {str(path)!r}: {exc.strerror or exc}"
        ) from exc
    return digest.hexdigest(), size


def sniff_media_type(path: Path) -> str:
    """The media type from the file's first bytes, never from its name.

    Returns "application/pdf" or one of `IMAGE_TYPES`. Raises `InputError(NOT_A_DOCUMENT)` with
    what the file looks like ("an HTML page", "an empty file", ...) for anything else, and
    `InputError(IO_ERROR)` when it cannot be read.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(SNIFF_BYTES)
    except OSError as exc:
        raise InputError(
            ErrorCategory.IO_ERROR, f"cannot read {str(path)!r}: {exc.strerror or exc}"
        ) from exc
    media_type = _media_type_of(head)
    if media_type is None:
        raise InputError(
            ErrorCategory.NOT_A_DOCUMENT,
            f"{str(path)!r} is not a PDF or image: it looks like {_describe(head)}; "
            "convert it to PDF or remove it from the inbox",
        )
    return media_type


def _media_type_of(head: bytes) -> str | None:
    for magic, media_type in _DOCUMENT_MAGIC:
        if head.startswith(magic):
            return media_type
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:2] == b"BM" and len(head) >= 14 and head[6:10] == b"\x00\x00\x00\x00":
        return "image/bmp"  # "BM" alone is too weak; the reserved header words must be zero
    if b"%PDF-" in head:
        return PDF
    return None


def _describe(head: bytes) -> str:
    """A short human description of bytes that are not a document."""
    if not head:
        return "an empty file"
    for magic, what in _OTHER_MAGIC:
        if head.startswith(magic):
            return what
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"<!doctype html") or b"<html" in text:
        return "an HTML page (often a login or error page saved instead of the file)"
    if text.startswith(b"<?xml") or text.startswith(b"<svg"):
        return "XML or SVG"
    if head[4:8] == b"ftyp":
        return "an ISO media file (HEIC/AVIF image or MP4 video)"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "unrecognised binary data"
    return "plain text"


def ingest_file(path: Path, settings: RasterSettings) -> IngestedFile:
    """Hash `path`, then check its size and type.

    The hash comes first (the whole file, even one above the size cap: memory stays flat, time
    is linear in size) so that every refusal is a `RejectedFile` (an `InputError`) carrying
    sha256 and size: an empty file fails as not_a_document, a file above
    `settings.max_file_bytes` as too_large, a non-document as not_a_document. An unreadable file
    raises a plain `InputError(IO_ERROR)`: there is no hash to record it by.
    """
    path = Path(path)
    sha256, size = hash_file(path)

    def reject(category: ErrorCategory, message: str) -> RejectedFile:
        return RejectedFile(category, message, path=path, sha256=sha256, size_bytes=size)

    if size == 0:
        raise reject(
            ErrorCategory.NOT_A_DOCUMENT,
            f"{str(path)!r} is an empty file (0 bytes); was the download or scan interrupted?",
        )
    if size > settings.max_file_bytes:
        raise reject(
            ErrorCategory.TOO_LARGE,
            f"{str(path)!r} has {size} bytes, more than max_file_bytes={settings.max_file_bytes}; "
            "raise DOCEXTRACT_RASTER__MAX_FILE_BYTES or split the file",
        )
    try:
        media_type = sniff_media_type(path)
    except InputError as exc:
        raise reject(exc.category, exc.message) from exc
    return IngestedFile(path=path, sha256=sha256, media_type=media_type, size_bytes=size)
