"""The tiles command: what the vision tower receives, for debugging."""

from __future__ import annotations

from pipeline.cli import app  # noqa: F401  (commands register on it)
