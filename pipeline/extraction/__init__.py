"""Extraction: a document's pages -> tiles -> model calls -> validated, merged record.

- `run`: `extract()`, the loop feed -> submit -> collect -> assemble, and the answers' bookkeeping.
- `feed`: the document's tiles, lazily, through `tiling.tile_document` (what `docextract tiles`
  shows is what the model gets).
- `flight`: the generate calls and tiles one document keeps in flight.
- `answers`: generate with batch splitting, parse and validate an answer, the re-ask problem.
- `result`: `ModelCall`, `Extracted` (before any decision), `ExtractionResult` (after `finalize`).
"""

from pipeline.extraction.answers import generate_splitting_on_failure, parse_answer
from pipeline.extraction.result import Extracted, ExtractionResult, ModelCall, summarize_errors
from pipeline.extraction.run import extract, timeout_error

__all__ = [
    "Extracted",
    "ExtractionResult",
    "ModelCall",
    "extract",
    "generate_splitting_on_failure",
    "parse_answer",
    "summarize_errors",
    "timeout_error",
]
