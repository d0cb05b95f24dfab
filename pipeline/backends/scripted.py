"""A scripted backend: answers from a script, never from a model.

For testing the logic around the model (validation, re-ask, merge, statuses, storage) and for
dry runs of the plumbing. It is named as what it is: its `model_id` starts with "scripted", so a
record it produced can never pass for a model's.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pipeline.geometry import ImageGeometry, anyres_image_tokens
from pipeline.settings import Settings
from pipeline.types import StopReason, VisionOutput, VisionRequest

Reply = str | tuple[str, StopReason] | BaseException
Script = Callable[[VisionRequest, int], Reply]


class ScriptedModel:
    """Replies to each request with `script(request, call_number)` (call_number counts from 0).

    A reply is the output text, a (text, stop_reason) pair, or an exception to raise from
    `generate()` for the whole batch (to inject model faults). Requests are kept in `requests`
    for tests to inspect, with the batch sizes in `batches`, unless `keep_requests` is False (long
    runs: they hold images).
    """

    def __init__(
        self, script: Script, model_id: str = "scripted", *, keep_requests: bool = True
    ) -> None:
        self.model_id = model_id
        self.geometry = ImageGeometry()
        self.requests: list[VisionRequest] = []
        self.batches: list[int] = []
        self.calls = 0
        self._keep = keep_requests
        self._script = script
        self._lock = threading.Lock()

    @classmethod
    def from_replies(cls, replies: Iterable[Reply], model_id: str = "scripted") -> ScriptedModel:
        """Answer the n-th request with the n-th reply; running out is a test error."""
        queue = list(replies)

        def script(request: VisionRequest, number: int) -> Reply:
            if number >= len(queue):
                raise AssertionError(
                    f"scripted model got request {number + 1}, has {len(queue)} replies"
                )
            return queue[number]

        return cls(script, model_id)

    def load(self) -> None:
        pass

    def image_tokens(self, width: int, height: int) -> int:
        return anyres_image_tokens(width, height, self.geometry)

    def generate(
        self, requests: Sequence[VisionRequest], *, timeout_s: float | None = None
    ) -> list[VisionOutput]:
        with self._lock:
            if self._keep:
                self.batches.append(len(requests))
            numbered = [(self.calls + i, r) for i, r in enumerate(requests)]
            self.calls += len(requests)
            if self._keep:
                self.requests.extend(requests)
        replies = [self._script(request, number) for number, request in numbered]
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply
        return [
            self._output(request, reply) for request, reply in zip(requests, replies, strict=True)
        ]

    def _output(self, request: VisionRequest, reply: Reply) -> VisionOutput:
        stop: StopReason = "end"
        if isinstance(reply, tuple):
            text, stop = reply
        else:
            text = str(reply)
        image_tokens = sum(self.image_tokens(im.width, im.height) for im in request.images)
        return VisionOutput(
            text=text,
            stop_reason=stop,
            input_tokens=image_tokens + len(request.prompt) // 4,
            output_tokens=max(1, len(text) // 4),
            image_tokens=image_tokens,
        )


def empty_record_json(json_schema: dict[str, Any] | None) -> str:
    """The smallest valid answer for a strict grammar schema: null scalars, empty lists, and
    the first allowed value where a property cannot be null (an enum without null, a const).
    So a routing request (`{"document_type": one of the candidates}`) gets its first
    candidate."""
    if not json_schema:
        return "{}"
    properties = json_schema.get("properties", {})
    return json.dumps({name: _empty_value(spec) for name, spec in properties.items()})


def _empty_value(spec: dict[str, Any]) -> Any:
    if _is_array(spec):
        return []
    if "const" in spec:
        return spec["const"]
    allowed = spec.get("enum") or [None]
    return None if None in allowed else allowed[0]


def _is_array(spec: dict[str, Any]) -> bool:
    return spec.get("type") == "array" or any(
        o.get("type") == "array" for o in spec.get("anyOf", [])
    )


def create(settings: Settings) -> ScriptedModel:
    """The `scripted` backend from the CLI: a dry run that answers every request with an empty
    record (`empty_record_json`), to check configuration, storage and orchestration without any
    model; under `--schema auto` every document is routed to the first candidate schema."""
    del settings

    def script(request: VisionRequest, number: int) -> Reply:
        return empty_record_json(request.json_schema)

    # Keeps no requests: their page images would grow with every page of a run (3 MB a page).
    return ScriptedModel(script, model_id="scripted-empty", keep_requests=False)
