"""Batching across pages and documents: many callers, one busy model.

Documents are processed by concurrent worker threads (Prefect tasks); each calls
`generate(requests)` for its own tiles. `BatchingModel` queues those requests and hands the model
batches formed across all callers: similar sizes together (less padding), within a request count
and an image-token budget, the batch size halved on out-of-memory and grown back after a run of
successes. When the wrapped backend can prepare a batch apart from running it (`prepare` /
`generate_prepared`, as the transformers backend does), the next batch is preprocessed on the CPU
while the current one runs, so the accelerator does not wait for the image processor.

When to close a batch: with the model idle, when it is full or its oldest request has waited
`max_wait_s`; with the model busy, it stays open to fill until just before the running batch is
expected to end (its recent batches' duration, less the time preparing one takes), so requests
that arrive meanwhile ride along instead of waiting for the batch after. One batch at most is
formed ahead of the running one.

Requests whose caller gave up (its `timeout_s` passed) are taken out of the queue, and a running
batch that no one waits for any more is told to stop at its next step (`generate_prepared`'s
`should_stop`). `close()` stops the threads with a bounded wait; it runs at interpreter exit, so
that no thread is inside torch when Python finalizes (a daemon thread killed there aborts the
process: "terminate called without an active exception", exit 134).
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

from pipeline.backends.base import VisionModel
from pipeline.errors import GenerationTimeout, ModelError
from pipeline.geometry import ImageGeometry
from pipeline.types import VisionOutput, VisionRequest

log = logging.getLogger(__name__)


@dataclass(order=True)
class _Pending:
    cost: int
    enqueued: float = field(compare=False)
    request: VisionRequest = field(compare=False)
    future: Future[VisionOutput] = field(compare=False)


@dataclass
class BatchStats:
    batches: int = 0
    requests: int = 0
    shrinks: int = 0
    largest: int = 0
    busy_s: float = 0.0  # wall time inside the wrapped model's generate
    prepare_s: float = 0.0  # wall time in the processor, overlapped with generation
    first_start: float | None = None  # perf_counter() when the first batch began
    last_end: float | None = None  # perf_counter() when the latest batch ended


class BatchingModel:
    """A `VisionModel` that merges concurrent `generate()` calls into batches of `inner`.

    `max_batch` requests and `max_image_tokens` image tokens at most per batch; a batch is sent
    when full or when its oldest request has waited `max_wait_s`. Thread-safe.
    """

    def __init__(
        self,
        inner: VisionModel,
        *,
        max_batch: int,
        max_image_tokens: int | None = None,
        max_wait_s: float = 0.05,
        grow_after: int = 8,
    ) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.max_batch = max_batch
        self.max_image_tokens = max_image_tokens
        self.max_wait_s = max_wait_s
        self.grow_after = grow_after
        self.stats = BatchStats()
        self._limit = max_batch
        self._successes = 0
        self._pending: list[_Pending] = []
        self._cond = threading.Condition()
        self._ready: tuple[list[_Pending], Any] | None = None  # formed, prepared, not yet run
        self._running_since: float | None = None  # time.monotonic() the running batch began
        self._batch_s: float | None = None  # how long batches take (moving average)
        self._prepare_s: float | None = None  # how long preparing one takes (moving average)
        self._threads: list[threading.Thread] = []
        self._closing = False
        self._atexit = False

    @property
    def geometry(self) -> ImageGeometry:  # the inner model's, which may change on load()
        return self.inner.geometry

    def load(self) -> None:
        self.inner.load()

    def image_tokens(self, width: int, height: int) -> int:
        return self.inner.image_tokens(width, height)

    def generate(
        self, requests: Sequence[VisionRequest], *, timeout_s: float | None = None
    ) -> list[VisionOutput]:
        """Outputs in order. Raises ModelError if any request failed for good, and
        GenerationTimeout when `timeout_s` passes first (the batch finishes unseen)."""
        if not requests:
            return []
        self._start()
        now = time.monotonic()
        items = [_Pending(self._cost(r), now, r, Future()) for r in requests]
        with self._cond:
            self._pending.extend(items)
            self._cond.notify_all()
        deadline = None if timeout_s is None else now + timeout_s
        outputs = []
        for item in items:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                outputs.append(item.future.result(timeout=left))
            except FutureTimeout:
                self._abandon(items)
                raise GenerationTimeout(f"no output within {timeout_s:.0f} s") from None
        return outputs

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop the batch threads: queued requests fail with ModelError, the running batch ends
        at its next step, and each thread is waited for up to `timeout_s` seconds. A later
        `generate()` starts them again."""
        with self._cond:
            self._closing = True
            for item in self._pending:
                self._settle(item, error=ModelError("the model was closed before this request ran"))
            self._pending.clear()
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout_s)
        with self._cond:
            if not any(thread.is_alive() for thread in self._threads):
                self._threads, self._closing = [], False
            else:
                log.warning("a model thread did not stop within %.0f s", timeout_s)

    def _abandon(self, items: list[_Pending]) -> None:
        """The caller stopped waiting: its queued requests leave the queue, and its futures are
        cancelled, which stops a running batch made only of them (see `_run_batches`)."""
        gone = {id(item) for item in items}
        with self._cond:
            self._pending = [p for p in self._pending if id(p) not in gone]
            for item in items:
                item.future.cancel()
            self._cond.notify_all()

    def _settle(
        self, item: _Pending, output: VisionOutput | None = None, error: Exception | None = None
    ) -> None:
        """Resolve a request's future unless its caller gave up on it."""
        with self._cond:
            if item.future.cancelled():
                return
            if error is not None:
                item.future.set_exception(error)
            else:
                item.future.set_result(output)  # type: ignore[arg-type]

    def _cost(self, request: VisionRequest) -> int:
        return (
            sum(self.inner.image_tokens(i.width, i.height) for i in request.images)
            + len(request.prompt) // 4
        )

    def _start(self) -> None:
        with self._cond:
            if self._threads:
                return
            if not self._atexit:  # once, and only for a model that ever ran
                atexit.register(self.close)
                self._atexit = True
            for target, name in ((self._form_batches, "former"), (self._run_batches, "runner")):
                thread = threading.Thread(
                    target=target, name=f"docextract-batch-{name}", daemon=True
                )
                thread.start()
                self._threads.append(thread)

    # -- forming batches (CPU thread: grouping and preprocessing) --------------------------

    def _form_batches(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            if not batch:
                continue
            prepared = self._prepare([p.request for p in batch])
            with self._cond:
                self._ready = (batch, prepared)
                self._cond.notify_all()

    def _next_batch(self) -> list[_Pending] | None:
        """The next batch to prepare; None once the model is closing."""
        with self._cond:
            while not self._closing and (not self._pending or self._ready is not None):
                self._cond.wait()
            while not self._closing and 0 < len(self._pending) < self._limit:
                left = self._close_at() - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            if self._closing or not self._pending:  # closing, or all abandoned meanwhile
                return None if self._closing else []
            return self._take_group()

    def _close_at(self) -> float:
        """When the batch being formed must close (monotonic seconds), full or not."""
        oldest = min(p.enqueued for p in self._pending) + self.max_wait_s
        if self._running_since is None or self._batch_s is None:
            return oldest  # the model is idle (or nothing is known yet): do not keep it waiting
        # ready (prepared) when the running batch is expected to end, with a margin for error
        return max(oldest, self._running_since + self._batch_s - 2 * (self._prepare_s or 0.0))

    def _take_group(self) -> list[_Pending]:
        """The oldest request and the ones closest to it in size, within the limits."""
        self._pending.sort()
        anchor = min(range(len(self._pending)), key=lambda i: self._pending[i].enqueued)
        lo = hi = anchor
        tokens = self._pending[anchor].cost
        while hi - lo + 1 < self._limit:
            below = self._pending[lo - 1] if lo > 0 else None
            above = self._pending[hi + 1] if hi + 1 < len(self._pending) else None
            anchor_cost = self._pending[anchor].cost
            pick_below = below is not None and (
                above is None or anchor_cost - below.cost <= above.cost - anchor_cost
            )
            chosen = below if pick_below else above
            if chosen is None or (
                self.max_image_tokens is not None and tokens + chosen.cost > self.max_image_tokens
            ):
                break
            tokens += chosen.cost
            lo, hi = (lo - 1, hi) if pick_below else (lo, hi + 1)
        group = self._pending[lo : hi + 1]
        del self._pending[lo : hi + 1]
        return group

    def _prepare(self, requests: list[VisionRequest]) -> Any:
        prepare = getattr(self.inner, "prepare", None)
        if prepare is None:
            return None
        started = time.perf_counter()
        try:
            return prepare(requests)
        except Exception as exc:
            return exc
        finally:
            seconds = time.perf_counter() - started
            self.stats.prepare_s += seconds
            self._prepare_s = _moving_average(self._prepare_s, seconds)

    # -- running batches (the model's thread) ----------------------------------------------

    def _run_batches(self) -> None:
        while True:
            with self._cond:
                while self._ready is None and not self._closing:
                    self._cond.wait()
                if self._closing:
                    for item in self._ready[0] if self._ready else ():
                        self._settle(item, error=ModelError("the model was closed"))
                    self._ready = None
                    return
                assert self._ready is not None
                (batch, prepared), self._ready = self._ready, None
                if all(item.future.cancelled() for item in batch):
                    self._cond.notify_all()  # no one waits for it: the former may go on
                    continue
                self._running_since = time.monotonic()
                self._cond.notify_all()  # the former may form the next batch
            started = time.perf_counter()
            if self.stats.first_start is None:
                self.stats.first_start = started
            try:
                outputs = self._run(batch, prepared)
            except ModelError as exc:
                self._failed(batch, exc)
                continue
            except Exception as exc:
                for item in batch:
                    self._settle(item, error=exc)
                continue
            finally:
                self.stats.last_end = time.perf_counter()
                self.stats.busy_s += self.stats.last_end - started
                with self._cond:
                    seconds = time.monotonic() - self._running_since
                    self._batch_s = _moving_average(self._batch_s, seconds)
                    self._running_since = None
                    self._cond.notify_all()  # idle now: a batch being formed closes
            self._succeeded(batch, outputs)

    def _run(self, batch: list[_Pending], prepared: Any) -> list[VisionOutput]:
        if isinstance(prepared, BaseException):
            raise prepared
        if prepared is not None:

            def should_stop() -> bool:  # closing, or every caller of the batch gave up
                return self._closing or all(item.future.cancelled() for item in batch)

            return list(
                self.inner.generate_prepared(prepared, should_stop=should_stop)  # type: ignore[attr-defined]
            )
        return list(self.inner.generate([p.request for p in batch]))

    def _succeeded(self, batch: list[_Pending], outputs: list[VisionOutput]) -> None:
        for item, output in zip(batch, outputs, strict=True):
            self._settle(item, output)
        with self._cond:
            self.stats.batches += 1
            self.stats.requests += len(batch)
            self.stats.largest = max(self.stats.largest, len(batch))
            self._successes += 1
            if self._limit < self.max_batch and self._successes >= self.grow_after:
                self._limit, self._successes = min(self.max_batch, self._limit * 2), 0
                log.info("batch limit back up to %d", self._limit)

    def _failed(self, batch: list[_Pending], exc: ModelError) -> None:
        """A lone request fails for good; a bigger batch is split and queued again, and on
        out-of-memory the batch limit is halved for what follows."""
        if len(batch) == 1:
            self._settle(batch[0], error=exc)
            return
        with self._cond:
            if exc.retryable:
                self._limit = max(1, min(self._limit, len(batch)) // 2)
                self.stats.shrinks += 1
                log.warning(
                    "batch of %d failed (%s); batch limit now %d", len(batch), exc, self._limit
                )
            else:  # split so that only the request that fails keeps failing
                self._limit = max(1, min(self._limit, (len(batch) + 1) // 2))
            self._successes = 0
            self._pending.extend(item for item in batch if not item.future.cancelled())
            self._cond.notify_all()


def _moving_average(average: float | None, value: float, weight: float = 0.3) -> float:
    return value if average is None else (1 - weight) * average + weight * value
