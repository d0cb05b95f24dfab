"""Asking the model and reading its answers: a batch that fails is split, an answer is
validated by the schema (the only validator), a problem is put in words for the re-ask."""

from __future__ import annotations

from pydantic import ValidationError

from pipeline.backends import VisionModel
from pipeline.errors import GenerationTimeout, ModelError
from pipeline.types import VisionOutput, VisionRequest
from schemas.base import ExtractionSchema


def generate_splitting_on_failure(
    model: VisionModel, requests: list[VisionRequest], *, timeout_s: float | None = None
) -> list[VisionOutput | ModelError]:
    """`model.generate`, halving a batch that fails, so one bad request (or an out-of-memory
    on a big batch) costs only its own output: that slot holds the ModelError instead.
    A timeout is not split: every slot holds it."""
    try:
        return list(model.generate(requests, timeout_s=timeout_s))
    except GenerationTimeout as exc:
        return [exc] * len(requests)
    except ModelError as exc:
        if len(requests) == 1:
            return [exc]
        middle = len(requests) // 2
        return generate_splitting_on_failure(
            model, requests[:middle], timeout_s=timeout_s
        ) + generate_splitting_on_failure(model, requests[middle:], timeout_s=timeout_s)


def parse_answer(
    schema: type[ExtractionSchema], output: VisionOutput
) -> tuple[ExtractionSchema | None, str | None]:
    """The validated record, or None and the problem in words (fed back in the re-ask)."""
    if output.stop_reason == "length":
        return None, (
            f"the answer was cut off at {output.output_tokens} tokens before the JSON "
            "ended; answer more briefly"
        )
    text = _json_object_text(output.text)
    try:
        return schema.model_validate_json(text), None
    except ValidationError as exc:
        return None, format_validation_error(exc)


def _json_object_text(text: str) -> str:
    """The outermost {...} of an answer (unconstrained backends wrap JSON in prose or fences)."""
    start, end = text.find("{"), text.rfind("}")
    return text[start : end + 1] if 0 <= start < end else text


def format_validation_error(exc: ValidationError, limit: int = 5) -> str:
    errors = exc.errors(include_url=False)
    parts = []
    for error in errors[:limit]:
        where = ".".join(str(p) for p in error["loc"]) or "answer"
        parts.append(f"{where}: {error['msg']}")
    more = f" (and {len(errors) - limit} more)" if len(errors) > limit else ""
    return "; ".join(parts) + more
