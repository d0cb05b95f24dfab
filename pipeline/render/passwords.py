"""PDF passwords a user supplies, looked up per document. Secret: never logged or stored.

The file is JSON: keys are a file name, a full path or a sha256; the key "*" holds a list of
passwords tried, in order, on any encrypted file without its own entry:

    {"invoice-0042.pdf": "s3cret", "9f2c...e1": "other", "*": ["company-default"]}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import ConfigError


@dataclass(frozen=True)
class PasswordBook:
    by_key: dict[str, str] = field(default_factory=dict, repr=False)
    fallbacks: tuple[str, ...] = field(default=(), repr=False)

    def candidates(self, path: Path, sha256: str) -> list[str]:
        """Passwords to try for this document, most specific first (may be empty)."""
        found = [
            self.by_key[k] for k in (sha256, str(path.resolve()), path.name) if k in self.by_key
        ]
        return list(dict.fromkeys([*found, *self.fallbacks]))

    def __repr__(self) -> str:  # the passwords themselves never show
        return f"PasswordBook({len(self.by_key)} entries, {len(self.fallbacks)} fallbacks)"


def load_passwords(path: Path | None) -> PasswordBook:
    """Read a passwords file (see the module doc). Raises ConfigError naming what is wrong,
    never quoting a password."""
    if path is None:
        return PasswordBook()
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read the passwords file {str(path)!r}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"the passwords file {str(path)!r} is not valid JSON (line {exc.lineno}); it must be "
            'an object like {"file.pdf": "password", "*": ["default"]}'
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"the passwords file {str(path)!r} must hold a JSON object")
    fallbacks = data.pop("*", [])
    if isinstance(fallbacks, str):
        fallbacks = [fallbacks]
    bad = [k for k, v in data.items() if not isinstance(v, str)]
    if bad or not all(isinstance(v, str) for v in fallbacks):
        raise ConfigError(
            f"the passwords file {str(path)!r} has non-string passwords (keys: {bad or ['*']})"
        )
    return PasswordBook(dict(data), tuple(fallbacks))
