"""Commands about extraction quality: schemas, eval, ask."""

from __future__ import annotations

from pipeline.cli import app  # noqa: F401  (commands register on it)
