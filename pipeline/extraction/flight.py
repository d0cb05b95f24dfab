"""The generate calls one document keeps going at once, and the tiles waiting for a call.

Tiles go to the model as they are cut, a call per page or so, without waiting for the answers
before; the batching layer merges the calls of every document into its batches. At most
`CALLS_IN_FLIGHT` calls and `window` tiles (one batch running, the next one queued) are out.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from pipeline.backends import VisionModel
from pipeline.errors import ModelError
from pipeline.extraction.answers import generate_splitting_on_failure
from pipeline.types import Tile, VisionOutput, VisionRequest

CALLS_IN_FLIGHT = 4


@dataclass
class Job:
    """One tile to ask about: its prompt, which attempt this is, and its place in the document."""

    tile: Tile
    attempt: int
    prompt: str
    note: str = ""  # which part of the page the tile is (prompts.tile_note)
    order: int = 0  # the tile's place in the document: results are merged in this order


Answer = VisionOutput | ModelError


class InFlight:
    """Pending jobs and running generate calls of one document."""

    def __init__(self, model: VisionModel, batch_size: int) -> None:
        self.pending: deque[Job] = deque()
        self._running: dict[Future[list[Answer]], list[Job]] = {}
        self._model = model
        self._size = batch_size
        self.window = 2 * batch_size  # tiles in flight: one batch running, the next one queued
        self._pool = ThreadPoolExecutor(CALLS_IN_FLIGHT, thread_name_prefix="docextract-extract")

    @property
    def flying(self) -> int:
        """Tiles in running calls."""
        return sum(len(batch) for batch in self._running.values())

    @property
    def busy(self) -> bool:
        return bool(self._running)

    def room(self) -> int:
        """How many more tiles may be queued now."""
        return self.window - self.flying - len(self.pending)

    def jobs(self) -> list[Job]:
        """Every job not answered yet: in running calls and pending."""
        return [job for batch in self._running.values() for job in batch] + list(self.pending)

    def submit(self, request: Callable[[Job], VisionRequest], timeout_s: float | None) -> None:
        """Start calls for pending jobs while the call and tile limits allow."""
        flying = self.flying
        while self.pending and len(self._running) < CALLS_IN_FLIGHT and flying < self.window:
            count = min(self._size, self.window - flying, len(self.pending))
            batch = [self.pending.popleft() for _ in range(count)]
            flying += len(batch)
            call = self._pool.submit(
                generate_splitting_on_failure,
                self._model,
                [request(job) for job in batch],
                timeout_s=timeout_s,
            )
            self._running[call] = batch

    def collect(self, timeout_s: float | None) -> Iterator[tuple[Job, Answer]]:
        """The answers of the calls that end within `timeout_s` (None: the first to end)."""
        done, _ = wait(self._running, timeout=timeout_s, return_when=FIRST_COMPLETED)
        for call in done:
            batch = self._running.pop(call)
            yield from zip(batch, call.result(), strict=True)

    def close(self) -> None:
        """Stop taking calls; calls still running at a deadline are abandoned, not waited for."""
        self._pool.shutdown(wait=False)
