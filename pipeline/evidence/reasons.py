"""Review reasons a clerk can act on, from groundings and confidences.

`total 4,654.14 is not printed on the document (closest: 4,645.14, page 1)`;
`total: confidence 0.42 is below 0.80`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pipeline.evidence.confidence import FieldConfidence
from pipeline.evidence.grounding import FieldGrounding


def _shown(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def grounding_reasons(
    values: Mapping[str, Any],
    groundings: Mapping[str, FieldGrounding],
    must_be_grounded: Callable[[str], bool],
) -> list[str]:
    """One reason per must-be-grounded field whose value is not on the document, in path
    order of `values`. Unavailable grounding gives no reason (the page could not be read)."""
    reasons = []
    for path, value in values.items():
        grounding = groundings.get(path)
        if grounding is None or grounding.kind != "not_found" or not must_be_grounded(path):
            continue
        reason = f"{path} {_shown(value)} is not printed on the document"
        if grounding.closest:
            text, page = grounding.closest
            reason += f" (closest: {_shown(text)}, page {page})"
        reasons.append(reason)
    return reasons


def confidence_reasons(confidences: Mapping[str, FieldConfidence], threshold: float) -> list[str]:
    """One reason per field whose confidence is below `threshold` (in [0, 1])."""
    return [
        f"{path}: confidence {conf.value:.2f} is below {threshold:.2f}"
        + (f" ({_parts(conf)})" if conf.parts else "")
        for path, conf in confidences.items()
        if conf.value < threshold
    ]


def _parts(conf: FieldConfidence) -> str:
    return ", ".join(f"{name} {value:.2f}" for name, value in conf.parts.items() if value < 1)
