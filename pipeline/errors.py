"""The exception tree.

Program failures are exceptions; page and document failures are data (see `types.ErrorItem`).
`ConfigError` and `InfrastructureError` (`StoreError` among them) stop a run at once and give its
claims back; `InputError` and `ModelError` are caught at the
document boundary and recorded as that document's status, so the batch goes on.
"""

from __future__ import annotations

from pipeline.types import ErrorCategory
from schemas.errors import ConfigError, DocextractError

__all__ = [
    "ConfigError",
    "DocextractError",
    "GenerationTimeout",
    "InfrastructureError",
    "InputError",
    "ModelError",
    "StoreError",
]


class InfrastructureError(DocextractError):
    """A fault of the machine, not of the document (the page cache cannot be written: disk full
    or read-only; the database connection is lost): the run stops, its claims are given back,
    and the next run does the work. Never recorded as a document's status."""


class StoreError(InfrastructureError):
    """The database cannot be reached, is out of date, or refused a write."""


class InputError(DocextractError):
    """A document (or one page of it) cannot be read. Carries the category recorded for it."""

    def __init__(self, category: ErrorCategory, message: str, page: int | None = None) -> None:
        super().__init__(message)
        self.category = category
        self.message = message
        self.page = page


class ModelError(DocextractError):
    """The model backend failed to produce an output (load failure, OOM, server error)."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class GenerationTimeout(ModelError):
    """The caller's time limit passed before its outputs were ready."""
