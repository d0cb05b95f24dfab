"""What the store keeps of one extraction beside its record: how it was made (provenance: model,
backend, prompt and schema versions, tiling, DPI), what it cost (tokens, model calls, seconds,
CPU and GPU time) and the raw answers, as one typed `ExtractionOutcome`."""

from __future__ import annotations

from pipeline.backends import VisionModel, backend_name_for
from pipeline.extraction import ExtractionResult
from pipeline.settings import Settings
from pipeline.store import repository as repo
from schemas import schema_reference


def stored_outcome(
    result: ExtractionResult, model: VisionModel, settings: Settings, seconds: float
) -> repo.ExtractionOutcome:
    """The typed outcome the store keeps: the result, its provenance, tokens and timings."""
    calls = result.calls
    category = result.error_category
    model_seconds = sum(c.seconds for c in calls)
    return repo.ExtractionOutcome(
        status=result.status.value,
        error_category=category.value if category else None,
        error_message=result.error_message,
        record=result.record,
        review_reasons=result.review_reasons,
        errors=[e.to_json() for e in result.errors],
        raw_outputs=[c.to_json() for c in calls],
        provenance={
            **({"route": result.route} if result.route else {}),
            "model_id": model.model_id,
            "backend": backend_name_for(settings),
            "prompt_version": result.prompt_version,
            "schema_version": result.schema_version,
            **({"schema_ref": ref} if (ref := schema_reference(result.schema_name)) else {}),
            "tiling": settings.tiling.strategy,
            "dpi": settings.raster.dpi,
            "max_new_tokens": settings.model.max_new_tokens,
            **({"pages": result.pages} if result.pages else {}),
            **({"grounding": result.grounding} if result.grounding is not None else {}),
        },
        timings={
            **result.timings,
            "model_s": round(model_seconds, 3),
            "document_s": round(seconds, 3),
        },
        field_confidence=result.field_confidence,
        pages_total=result.pages_total,
        pages_failed=result.pages_failed,
        image_tokens=sum(c.image_tokens for c in calls),
        input_tokens=sum(c.input_tokens for c in calls),
        output_tokens=sum(c.output_tokens for c in calls),
        model_calls=len(calls),
        seconds=round(seconds, 3),
        cpu_seconds=result.timings.get("worker_cpu_s"),
        gpu_seconds=round(model_seconds, 3) if _on_gpu(model) else None,
    )


def _on_gpu(model: VisionModel) -> bool:
    inner = getattr(model, "inner", model)  # behind the batching layer
    device = getattr(inner, "device", None)
    return getattr(device, "type", None) == "cuda"
