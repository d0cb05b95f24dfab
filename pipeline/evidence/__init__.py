"""Evidence: every value vouched for by the page's own words, with a per-field confidence.

The stage `vouch` of DESIGN.md. A page's words with boxes come from the PDF text layer
(`text_layer_words`, pdfium) or from OCR (`ocr_words`, Tesseract), checked by
`text_layer_usable`; `DocumentIndex.build` indexes a document's words once; `ground_record`
finds every leaf value of a record (exact -> normalized -> fuzzy) and says where (page, box in
page pixels) or that it is not printed (`FieldGrounding`); `record_confidence` combines token
probabilities, grounding, agreement and rules into one number per field; `grounding_reasons`
and `confidence_reasons` turn them into review reasons; `calibration` measures how well the
confidence predicts correctness. Which fields must be grounded: `must_be_grounded` (declared
with `json_schema_extra={"grounded": True}` on a schema field; defaults in `fields`).

Pure functions over small data; this package imports nothing from store, backends, flows or cli.

Exports load lazily (PEP 562): the render worker imports `words`, `textlayer` and `ocr` alone,
without the grounding and schema code it never runs (about 0.25 s per worker start).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.evidence.calibration import (
        Bin,
        auroc,
        coverage_at_precision,
        expected_calibration_error,
        reliability_table,
    )
    from pipeline.evidence.confidence import (
        FieldConfidence,
        record_confidence,
        token_probabilities,
        value_spans,
    )
    from pipeline.evidence.fields import Kind, kind_function, leaves, must_be_grounded
    from pipeline.evidence.grounding import FieldGrounding, ground_record, ground_value
    from pipeline.evidence.index import DocumentIndex
    from pipeline.evidence.ocr import ocr_words, tesseract_available
    from pipeline.evidence.reasons import confidence_reasons, grounding_reasons
    from pipeline.evidence.textlayer import text_layer_usable, text_layer_words
    from pipeline.evidence.words import Limits, OcrUnavailable, PageWords, Word

_HOME = {
    "Bin": "calibration",
    "auroc": "calibration",
    "coverage_at_precision": "calibration",
    "expected_calibration_error": "calibration",
    "reliability_table": "calibration",
    "FieldConfidence": "confidence",
    "record_confidence": "confidence",
    "token_probabilities": "confidence",
    "value_spans": "confidence",
    "Kind": "fields",
    "kind_function": "fields",
    "leaves": "fields",
    "must_be_grounded": "fields",
    "FieldGrounding": "grounding",
    "ground_record": "grounding",
    "ground_value": "grounding",
    "DocumentIndex": "index",
    "ocr_words": "ocr",
    "tesseract_available": "ocr",
    "confidence_reasons": "reasons",
    "grounding_reasons": "reasons",
    "text_layer_usable": "textlayer",
    "text_layer_words": "textlayer",
    "Limits": "words",
    "OcrUnavailable": "words",
    "PageWords": "words",
    "Word": "words",
}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(f"pipeline.evidence.{_HOME[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Bin",
    "DocumentIndex",
    "FieldConfidence",
    "FieldGrounding",
    "Kind",
    "Limits",
    "OcrUnavailable",
    "PageWords",
    "Word",
    "auroc",
    "confidence_reasons",
    "coverage_at_precision",
    "expected_calibration_error",
    "ground_record",
    "ground_value",
    "grounding_reasons",
    "kind_function",
    "leaves",
    "must_be_grounded",
    "ocr_words",
    "record_confidence",
    "reliability_table",
    "tesseract_available",
    "text_layer_usable",
    "text_layer_words",
    "token_probabilities",
    "value_spans",
]
