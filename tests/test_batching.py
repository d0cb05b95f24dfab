"""Batching across callers: merged batches, size grouping, OOM back-off, failures, timeouts."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from _extract import extract_final
from conftest import make_page
from PIL import Image

from pipeline.backends.batching import BatchingModel
from pipeline.backends.scripted import ScriptedModel
from pipeline.errors import GenerationTimeout, ModelError
from pipeline.settings import Settings
from pipeline.types import ErrorCategory, Status, VisionRequest
from schemas.invoice import Invoice


def request(width: int = 64, height: int = 64, prompt: str = "p") -> VisionRequest:
    return VisionRequest(images=(Image.new("RGB", (width, height), "white"),), prompt=prompt)


def echo(req: VisionRequest, number: int) -> str:
    return req.prompt


def call_concurrently(model: BatchingModel, groups: list[list[VisionRequest]]) -> list[list[str]]:
    results: list[list[str]] = [[] for _ in groups]

    def worker(index: int) -> None:
        results[index] = [o.text for o in model.generate(groups[index])]

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(groups))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


def test_requests_of_concurrent_callers_share_batches_and_keep_their_order() -> None:
    inner = ScriptedModel(echo)
    model = BatchingModel(inner, max_batch=8, max_wait_s=0.3)
    groups = [[request(prompt=f"doc{d}-tile{t}") for t in range(2)] for d in range(4)]
    results = call_concurrently(model, groups)
    assert results == [[f"doc{d}-tile{t}" for t in range(2)] for d in range(4)]
    assert inner.batches == [8]  # four documents, one batch


def test_requests_that_arrive_while_the_model_is_busy_wait_to_fill_one_batch() -> None:
    """With the model busy, the next batch is not closed 'max_wait_s' after its first request
    but just before the running batch is expected to end: what arrives meanwhile rides along."""

    def slow(req: VisionRequest, number: int) -> str:
        time.sleep(0.4)  # per batch (the scripted model answers a batch one request at a time)
        return req.prompt

    inner = ScriptedModel(slow)
    model = BatchingModel(inner, max_batch=8, max_wait_s=0.01)
    model.generate([request(prompt="warm-up")])  # how long a batch takes, for the estimate
    first = threading.Thread(target=model.generate, args=([request(prompt="first")],))
    first.start()
    time.sleep(0.05)  # "first" is running: the model is busy for ~0.35 s more
    late = [[request(prompt=f"late{n}")] for n in range(4)]
    threads = []
    for group in late:  # one every 50 ms, each after the last one's batch would have closed
        threads.append(threading.Thread(target=model.generate, args=(group,)))
        threads[-1].start()
        time.sleep(0.05)
    for thread in [first, *threads]:
        thread.join(timeout=30)
    assert inner.batches == [1, 1, 4]


def test_batches_group_similar_sizes_and_respect_the_token_budget() -> None:
    inner = ScriptedModel(echo)
    small, large = inner.image_tokens(64, 64), inner.image_tokens(1000, 1000)
    mixed = [
        request(64, 64, "s1"),
        request(1000, 1000, "L1"),
        request(64, 64, "s2"),
        request(1000, 1000, "L2"),
    ]
    outputs = BatchingModel(inner, max_batch=2, max_wait_s=0.3).generate(mixed)
    assert [o.text for o in outputs] == ["s1", "L1", "s2", "L2"]
    assert sorted(_widths(inner)) == [[64, 64], [1000, 1000]]  # never small and large mixed

    inner = ScriptedModel(echo)
    BatchingModel(inner, max_batch=4, max_image_tokens=large + small, max_wait_s=0.3).generate(
        mixed
    )
    assert sorted(_widths(inner)) == [[64, 64], [1000], [1000]]  # two large ones never fit


def _widths(inner: ScriptedModel) -> list[list[int]]:
    return [
        [r.images[0].width for r in inner.requests[i : i + n]]
        for i, n in zip(_offsets(inner.batches), inner.batches, strict=True)
    ]


def _offsets(batches: list[int]) -> list[int]:
    offsets, total = [], 0
    for size in batches:
        offsets.append(total)
        total += size
    return offsets


def test_out_of_memory_halves_the_batch_then_grows_back() -> None:
    calls: list[int] = []

    class OomAboveTwo(ScriptedModel):
        def generate(self, requests, *, timeout_s=None):  # type: ignore[no-untyped-def]
            calls.append(len(requests))
            if len(requests) > 2:
                raise ModelError("CUDA out of memory", retryable=True)
            return super().generate(requests)

    model = BatchingModel(OomAboveTwo(echo), max_batch=8, max_wait_s=0.2, grow_after=2)
    outputs = model.generate([request(prompt=str(i)) for i in range(8)])
    assert [o.text for o in outputs] == [str(i) for i in range(8)]
    assert calls[0] == 8 and max(calls[1:]) <= 4
    assert model.stats.shrinks >= 1
    model.generate([request(prompt=str(i)) for i in range(4)])  # after successes: limit grows
    assert model._limit > 2


def test_a_poisoned_request_fails_alone() -> None:
    def script(req: VisionRequest, number: int) -> object:
        return ModelError("bad image") if req.prompt == "bad" else req.prompt

    model = BatchingModel(ScriptedModel(script), max_batch=4, max_wait_s=0.2)  # type: ignore[arg-type]
    good = model.generate([request(prompt="a")])
    assert [o.text for o in good] == ["a"]
    with pytest.raises(ModelError, match="bad image"):
        model.generate([request(prompt="b"), request(prompt="bad"), request(prompt="c")])


def test_a_bug_in_the_backend_reaches_the_caller_instead_of_hanging() -> None:
    def script(req: VisionRequest, number: int) -> object:
        raise KeyError("oops")

    model = BatchingModel(ScriptedModel(script), max_batch=2, max_wait_s=0.01)  # type: ignore[arg-type]
    with pytest.raises(KeyError):
        model.generate([request()], timeout_s=10)


def test_a_caller_time_limit_raises_generation_timeout() -> None:
    def slow(req: VisionRequest, number: int) -> str:
        time.sleep(1.0)
        return "late"

    model = BatchingModel(ScriptedModel(slow), max_batch=1, max_wait_s=0.0)
    started = time.monotonic()
    with pytest.raises(GenerationTimeout):
        model.generate([request()], timeout_s=0.2)
    assert time.monotonic() - started < 0.9


def test_a_document_over_its_time_limit_fails_its_pages_as_timeout(
    tmp_path: Path, settings: Settings
) -> None:
    def slow(req: VisionRequest, number: int) -> str:
        time.sleep(0.5)
        return "{}"

    settings.model.batch_size = 1
    model = BatchingModel(ScriptedModel(slow), max_batch=1, max_wait_s=0.0)
    pages = [make_page(tmp_path / str(n), n) for n in (1, 2, 3)]
    result = extract_final(pages, Invoice, model, settings, timeout_s=0.3)
    assert result.status is Status.FAILED
    assert result.error_category is ErrorCategory.TIMEOUT
    assert sorted(e.page for e in result.errors) == [1, 2, 3]
