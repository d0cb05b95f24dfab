"""The bytes a render reads: a private copy of the file, checked against the hash it was
registered under.

A document is identified by the sha256 of its bytes, read once at ingest; rendering happens
later, in chunks, each of which opens the file again. Reading the path each time would render
whatever lies there then: a file replaced mid-run put another file's pages under the first one's
hash, in the page cache, for good. So the renderer reads a copy made in one pass that also hashes
it, and nothing is rendered unless that hash is the document's.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

from pipeline.errors import InfrastructureError, InputError
from pipeline.render.common import DocumentError, cache_writes
from pipeline.types import ErrorCategory

_BLOCK = 1 << 20
_PREFIX = ".source-"


class VerifiedSource:
    """A lazily made private copy of `path` in `work_dir` whose sha256 is `sha256`.

    `path()` makes the copy on first use (so a document served from the cache copies nothing);
    `close()` removes it. Copies left by a killed process (named with its pid) are removed by
    the next one that renders the same document.
    """

    def __init__(self, path: Path, sha256: str, work_dir: Path) -> None:
        self._source, self._sha256, self._work_dir = Path(path), sha256, Path(work_dir)
        self._copy: Path | None = None

    def path(self) -> str:
        """The copy's path. Raises `InputError(IO_ERROR)` when the file cannot be read any more
        or its bytes no longer hash to the document's sha256."""
        if self._copy is None:
            _remove_stale_copies(self._work_dir)
            self._copy = self._copy_and_check()
        return str(self._copy)

    def close(self) -> None:
        if self._copy is not None:
            self._copy.unlink(missing_ok=True)
            self._copy = None

    def __enter__(self) -> VerifiedSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _copy_and_check(self) -> Path:
        name = self._source.name
        try:
            source = open(self._source, "rb")  # noqa: SIM115 (closed below)
        except OSError as exc:
            gone = isinstance(exc, FileNotFoundError)
            raise InputError(
                ErrorCategory.IO_ERROR,
                f"{name!r} vanished after it was registered; it is read again when it is back"
                if gone
                else f"cannot read {name!r}: {exc.strerror or exc}",
            ) from exc
        # Writing the copy can fail too (a full or read-only cache): a fault of the machine.
        try:
            with cache_writes(self._work_dir):
                fd, tmp = tempfile.mkstemp(
                    prefix=f"{_PREFIX}{os.getpid()}-", suffix=".tmp", dir=self._work_dir
                )
        except DocumentError as exc:
            source.close()
            raise InfrastructureError(exc.message) from exc
        digest = hashlib.sha256()
        try:
            with cache_writes(self._work_dir), source, os.fdopen(fd, "wb") as copy:
                while True:
                    try:
                        block = source.read(_BLOCK)
                    except OSError as exc:
                        raise InputError(
                            ErrorCategory.IO_ERROR, f"cannot read {name!r}: {exc.strerror or exc}"
                        ) from exc
                    if not block:
                        break
                    digest.update(block)
                    copy.write(block)
        except DocumentError as exc:  # from cache_writes: the cache, not the file
            Path(tmp).unlink(missing_ok=True)
            raise InfrastructureError(exc.message) from exc
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        if digest.hexdigest() != self._sha256:
            Path(tmp).unlink(missing_ok=True)
            raise InputError(
                ErrorCategory.IO_ERROR,
                f"{name!r} changed after it was registered (its bytes now hash to "
                f"{digest.hexdigest()[:12]}, not {self._sha256[:12]}); nothing of it was "
                "rendered. The new bytes are a new document on the next run",
            )
        return Path(tmp)


def _remove_stale_copies(work_dir: Path) -> None:
    for leftover in work_dir.glob(f"{_PREFIX}*.tmp"):
        pid = leftover.name[len(_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            with contextlib.suppress(OSError):
                leftover.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
