"""File names and paths as text that any database, JSON file or terminal accepts, and back.

On Linux a file name is bytes; Python reads the bytes that are not UTF-8 as lone surrogates
(`os.fsdecode`, "surrogateescape"), which no UTF-8 encoder accepts: SQLite, PostgreSQL and the
console all refused `bad\\xff\\xfename.pdf`. `to_text` writes each such byte as `\\xHH` and a
backslash as `\\\\`, so valid names are unchanged unless they hold a backslash, and `from_text`
gives back the exact name, bytes and all.
"""

from __future__ import annotations

import re

_SURROGATE_OR_BACKSLASH = re.compile(r"[\\\udc80-\udcff]")
_ESCAPE = re.compile(r"\\(\\|x[89a-fA-F][0-9a-fA-F])")


def to_text(path: str) -> str:
    """`path` (as `str(Path)` or `os.fsdecode` give it) as valid Unicode, reversibly."""
    return _SURROGATE_OR_BACKSLASH.sub(_escape_one, path)


def from_text(text: str) -> str:
    """The inverse of `to_text`: a path `open()` and `Path` accept, undecodable bytes included.

    Other backslash sequences are left as they are (paths stored before escaping existed)."""
    return _ESCAPE.sub(_unescape_one, text)


def _escape_one(match: re.Match[str]) -> str:
    char = match.group()
    return "\\\\" if char == "\\" else f"\\x{ord(char) - 0xDC00:02x}"


def _unescape_one(match: re.Match[str]) -> str:
    body = match.group(1)
    return "\\" if body == "\\" else chr(0xDC00 + int(body[1:], 16))
