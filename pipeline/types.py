"""Small frozen data types passed between the stages.

Page numbers are 1-based everywhere. Boxes are `(left, top, right, bottom)` in page pixels at the
page's rendering DPI. Nothing here imports torch.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from PIL import Image


class Status(enum.StrEnum):
    """The one recorded outcome of an extraction (document x schema x model x prompt version)."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    NEEDS_REVIEW = "needs_review"
    PARTIAL = "partial"
    FAILED = "failed"
    # Decisions of a person at the review desk: a rerun keeps them unless forced.
    APPROVED = "approved"
    CORRECTED = "corrected"
    REJECTED = "rejected"

    @property
    def is_final(self) -> bool:
        return self not in (Status.PENDING, Status.RUNNING)

    @property
    def is_reviewed(self) -> bool:
        return self in (Status.APPROVED, Status.CORRECTED, Status.REJECTED)


class ErrorCategory(enum.StrEnum):
    """Why a document or page failed. Stable strings: users filter reruns by them."""

    PASSWORD_REQUIRED = "password_required"
    NOT_A_DOCUMENT = "not_a_document"
    UNSUPPORTED_TYPE = "unsupported_type"
    CORRUPT = "corrupt"
    ZERO_PAGES = "zero_pages"
    TOO_LARGE = "too_large"
    RENDER_TIMEOUT = "render_timeout"
    RENDER_CRASH = "render_crash"  # the sandboxed renderer died (signal): rerun after upgrades
    MODEL_ERROR = "model_error"
    INVALID_OUTPUT = "invalid_output"
    TIMEOUT = "timeout"
    IO_ERROR = "io_error"
    INTERNAL_ERROR = "internal_error"
    BLANK = "blank"  # every page is blank (separator sheets, empty backs): nothing to read


@dataclass(frozen=True)
class ErrorItem:
    """One recorded failure: of a page (page set) or of the whole document (page None)."""

    category: ErrorCategory
    message: str
    page: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"category": str(self.category), "message": self.message, "page": self.page}


@dataclass(frozen=True)
class PageFacts:
    """What the pages stage (`pipeline.pages`) measured on a rendered page and did to it.

    `content_mm2`: area of text-like ink (specks, fills and sheet edges left out), in mm².
    `turned`: clockwise degrees (0, 90, 180, 270) the page was turned to stand upright, decided
    `by` "text" (the PDF text layer), "ink", "osd" (Tesseract's OSD), "ocr" (the OCR vote), or
    "none" (not sure: left as rendered; "off": not measured). The words worker carries a text
    layer onto the turned page.
    `skew`: degrees of small tilt corrected (counter-clockwise positive), 0.0 if none.
    """

    blank: bool = False
    content_mm2: float | None = None
    turned: int = 0
    by: str = "off"
    confidence: float | None = None
    skew: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class TextDirection:
    """Which way a page's text layer runs on the page as rendered: `turn`, the clockwise turn
    (0, 90, 180, 270) that makes most of its `chars` characters run left to right, and the
    `share` of them that agree (0..1). Read by the render worker (`render.textdirection`)."""

    turn: int
    chars: int
    share: float


@dataclass(frozen=True)
class PageImage:
    """A rendered page, cached on disk as PNG. `number` is 1-based. `rotation` is the clockwise
    rotation applied in all (/Rotate or EXIF, then the pages stage's turn); `facts` what the pages
    stage found (None: it did not run); `text` the direction of the PDF text layer as rendered
    (None: no text layer, an image, or a page taken from the cache)."""

    number: int
    path: Path
    width: int
    height: int
    dpi: int
    render_seconds: float = 0.0
    rotation: int = 0
    facts: PageFacts | None = None
    text: TextDirection | None = None

    @property
    def blank(self) -> bool:
        return self.facts is not None and self.facts.blank


Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Tile:
    """A region of a page sent to the model as one image, with its box in page pixels."""

    page: int
    box: Box
    image: Image.Image
    image_tokens: int = 0
    is_global: bool = False


@dataclass(frozen=True)
class VisionRequest:
    """One row of a batch: image(s), the prompt text and an optional JSON Schema constraint.

    `prompt` is the user message; the backend wraps it in the checkpoint's chat template and puts
    one image placeholder per image before it. `document` (the source file's path) and `page`
    (1-based) say what the request reads: models ignore them; the `scripted-truth` backend
    answers from the ground truth beside that document.
    """

    images: tuple[Image.Image, ...]
    prompt: str
    json_schema: dict[str, Any] | None = None
    max_new_tokens: int = 512
    document: str | None = None
    page: int | None = None


@dataclass(frozen=True)
class TokenLogprob:
    text: str
    logprob: float


StopReason = Literal["end", "length"]


@dataclass(frozen=True)
class VisionOutput:
    """What a backend returns for one request. `stop_reason == "length"` is never valid JSON.

    `seconds` is this request's share of the model time that produced it (a batch's generate
    time divided by its rows; a server request's own latency), so shares add up to model time.
    """

    text: str
    stop_reason: StopReason
    input_tokens: int
    output_tokens: int
    image_tokens: int = 0
    seconds: float = 0.0
    tokens: tuple[TokenLogprob, ...] | None = field(default=None, repr=False)
