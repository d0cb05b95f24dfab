"""The `VisionModel` protocol every backend implements (and the batcher wraps)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from pipeline.geometry import ImageGeometry
from pipeline.types import VisionOutput, VisionRequest


@runtime_checkable
class VisionModel(Protocol):
    """A model that turns a batch of image+prompt requests into text.

    Constructors never load weights: `load()` does (and `generate()` calls it when needed).
    `model_id` is the provenance string stored with every record.
    """

    model_id: str

    @property
    def geometry(self) -> ImageGeometry:
        """The processor's tile size and grid (may change when `load()` reads the checkpoint)."""
        ...

    def load(self) -> None: ...

    def generate(
        self, requests: Sequence[VisionRequest], *, timeout_s: float | None = None
    ) -> list[VisionOutput]:
        """One output per request, in order. Raises ModelError when the batch as a whole fails.

        `timeout_s` bounds the wall time: a backend either stops generating (outputs cut off,
        stop reason "length") or raises `pipeline.errors.GenerationTimeout`.
        """
        ...

    def image_tokens(self, width: int, height: int) -> int:
        """Image tokens one image of this size costs in a prompt (the processor's formula)."""
        ...
