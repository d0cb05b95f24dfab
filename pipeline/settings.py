"""The one settings object, built once at the edge (CLI, flow) and passed down.

Every value can come from the environment with the prefix `DOCEXTRACT_` and `__` between groups:
`DOCEXTRACT_DB_URL`, `DOCEXTRACT_MODEL__NAME=llava-next-13b`, `DOCEXTRACT_RASTER__DPI=150`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "docextract"


def _default_prefect_home() -> Path:
    """History is data, not cache: the XDG data folder, not `cache_dir`."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "docextract" / "prefect"


MODEL_ALIASES: dict[str, str] = {
    "llava-next-7b": "llava-hf/llava-v1.6-mistral-7b-hf",
    "llava-next-13b": "llava-hf/llava-v1.6-vicuna-13b-hf",
    "llava-next-34b": "llava-hf/llava-v1.6-34b-hf",
    "tiny-random": "tiny-random",
}


class ModelSettings(BaseModel):
    name: str = Field(
        "llava-next-7b",
        description="Model alias (llava-next-7b, llava-next-13b, llava-next-34b, tiny-random), "
        "a local checkpoint folder, or a Hugging Face hub id.",
    )
    backend: str = Field(
        "auto",
        description="Backend name from the registry; 'auto' picks 'tiny' for tiny-random and "
        "'transformers' otherwise.",
    )
    revision: str | None = Field(
        None, description="Hub revision (commit) to pin the checkpoint to."
    )
    device: str = Field(
        "auto", description="'auto' (CUDA when available), 'cpu', 'cuda', 'cuda:1'."
    )
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto",
        description="'auto': bfloat16 on GPUs that support it, float16 on others, float32 on CPU.",
    )
    attn_implementation: str = Field("sdpa", description="'sdpa', 'eager' or 'flash_attention_2'.")
    static_cache: bool = Field(
        False,
        description="Preallocate the KV cache (cache_implementation='static'); on CUDA, "
        "transformers then compiles the decode step. Pays only with steady batch shapes "
        "(each new shape recompiles): off by default, measure before turning it on.",
    )
    quantization: Literal["none", "4bit", "8bit"] = Field(
        "none", description="bitsandbytes loading, so the 7B model fits a 16 GB card (GPU only)."
    )
    batch_size: int = Field(
        8,
        ge=1,
        description="Most requests per generate() call, across documents; halved on "
        "out-of-memory and grown back after a run of successes.",
    )
    max_batch_image_tokens: int | None = Field(
        None,
        ge=1,
        description="Image-token budget per batch (a memory bound); none: batch_size alone.",
    )
    batch_wait_s: float = Field(
        0.05,
        ge=0,
        description="How long a request may wait for others to fill its batch while the model "
        "is idle; while it is busy, the next batch fills until just before the running one is "
        "expected to end.",
    )
    max_new_tokens: int = Field(768, ge=16, description="Hard cap on output tokens per request.")
    local_files_only: bool = Field(
        False, description="Never contact the hub; load from the local cache or a folder only."
    )
    base_url: str | None = Field(
        None,
        description="openai backend: the OpenAI-compatible server's base URL, e.g. "
        "http://gpu1:8000/v1 for `vllm serve`; '/v1' is added to a URL without a path.",
    )
    api_key: SecretStr | None = Field(
        None,
        description="openai backend: bearer token the server expects (vLLM's --api-key). "
        "Never logged.",
    )
    request_timeout_s: float = Field(
        300.0,
        gt=0,
        description="openai backend: longest wait for one answer, in seconds; a request still "
        "unanswered then fails (model_error) without being sent again.",
    )
    max_concurrency: int = Field(
        8,
        ge=1,
        description="openai backend: requests in flight at once from this process (one HTTP "
        "connection each). Requests in flight are also bounded by batch_size.",
    )
    perturb: Literal["none", "digit", "swap", "foreign", "made-up", "date"] = Field(
        "none",
        description="scripted-truth backend: answer from the ground truth beside each document "
        "with one must-be-grounded value made wrong this way (one digit changed, two digits "
        "swapped, another document's value, a made-up amount, a shifted date); 'none': the "
        "truth as it is.",
    )
    max_retries: int = Field(
        4,
        ge=0,
        description="openai backend: retries of a request after a 408, 429 or 5xx answer or a "
        "lost connection, with exponential backoff and jitter (Retry-After respected).",
    )


class RasterSettings(BaseModel):
    dpi: int = Field(200, ge=36, le=600, description="Rendering resolution for PDF pages.")
    chunk_pages: int = Field(
        4,
        ge=1,
        description="Pages per render step: one poppler call (memory stays flat), or that many "
        "pdfium pages; each step has render_timeout_s.",
    )
    max_pages: int = Field(500, ge=1, description="Documents with more pages fail as too_large.")
    max_page_pixels: int = Field(
        40_000_000,
        ge=1_000_000,
        description="Pixel cap per page image; PDF pages are rendered at a lower DPI to fit it, "
        "images above it fail as too_large.",
    )
    max_file_bytes: int = Field(
        200 * 1024 * 1024, ge=1, description="Files above this fail as too_large."
    )
    render_timeout_s: float = Field(
        60.0, gt=0, description="Time limit per step: describing the file, or one chunk of pages."
    )
    render_memory_mb: int = Field(
        4096, ge=256, description="Address-space cap of the render subprocess."
    )
    document_timeout_s: float = Field(
        900.0,
        gt=0,
        description="Wall-clock limit for rasterizing one whole document (all chunks and retries); "
        "past it the document fails as render_timeout.",
    )
    render_threads: int = Field(
        2,
        ge=1,
        description="pdftoppm processes (poppler) and PNG-encoding threads (both renderers) per "
        "render worker; lower it when several documents render at once.",
    )
    renderer: Literal["poppler", "pdfium"] = Field(
        "poppler",
        description="Primary PDF renderer, run in the sandboxed subprocess: 'poppler' (pdftoppm "
        "through pdf2image, in chunks of chunk_pages; the renderer this project is specified "
        "with) or 'pdfium' (pypdfium2, page by page; about 1.2x faster here, see "
        "bench/raster.py). Both honour the same limits, DPI fitting, /Rotate and passwords, and "
        "give the same page sizes.",
    )
    fallback_renderer: Literal["auto", "poppler", "pdfium", "none"] = Field(
        "auto",
        description="PDF renderer tried, in the same sandboxed subprocess, on files the primary "
        "renderer cannot open (corrupt or password refused) and on pages it fails, times out or "
        "crashes on. 'auto' is the renderer that is not primary; 'none' uses the primary only. "
        "Naming the primary renderer itself is an error.",
    )

    @model_validator(mode="after")
    def _fallback_differs(self) -> RasterSettings:
        if self.fallback_renderer == self.renderer:
            raise ValueError(
                f"fallback_renderer={self.fallback_renderer!r} is also the primary renderer; set "
                "DOCEXTRACT_RASTER__FALLBACK_RENDERER to 'auto' (the other renderer) or 'none'"
            )
        return self

    @property
    def fallback(self) -> Literal["poppler", "pdfium"] | None:
        """The PDF renderer tried after the primary one fails, or None for no fallback."""
        if self.fallback_renderer == "none":
            return None
        return "pdfium" if self.renderer == "poppler" else "poppler"


class TilingSettings(BaseModel):
    """How pages become the images the model reads (see pipeline/tiling.py, autotile.py)."""

    strategy: Literal["auto", "grid", "anyres"] = Field(
        "auto",
        description="'auto': tiles sized from the page's measured small print, covering only the "
        "rows that hold ink; 'grid': grid_rows x grid_cols overlapping tiles; 'anyres': the whole "
        "page, resized by the model's own processor (an A4 page at 200 DPI reaches the vision "
        "tower at about 57 DPI).",
    )
    target_x_height_px: float = Field(
        7.0,
        gt=0,
        le=64,
        description="auto: x-height (height of a lowercase x) that the page's small print keeps "
        "after the processor's resize, in pixels of a 336 px vision tile (scaled with the model's "
        "tile size). Higher is more legible and costs more image tokens.",
    )
    grid_rows: int = Field(
        3, ge=1, le=8, description="grid: rows of tiles (full-width bands by default)."
    )
    grid_cols: int = Field(
        1,
        ge=1,
        le=8,
        description="grid: columns of tiles; a vertical cut splits the lines it crosses, so "
        "columns are the first to go when the grid exceeds the page budget.",
    )
    overlap: float = Field(
        0.1,
        ge=0,
        le=0.5,
        description="grid: share of a cell's side that neighbouring tiles overlap at least (tiles "
        "widened to a pinpoint's shape overlap more).",
    )
    page_token_budget: int | None = Field(
        None,
        ge=1,
        description="Most image tokens one page may cost, global view included; unset: "
        "page_budget_vs_anyres times the page's whole-page cost (plus the global view's). The "
        "whole page as one image is the floor.",
    )
    page_budget_vs_anyres: float = Field(
        3.0,
        ge=1.0,
        description="Page budget, when page_token_budget is unset, as a multiple of the image "
        "tokens of the whole page at 'anyres' (2,256 for A4 with llava-next-7b).",
    )
    document_token_budget: int | None = Field(
        None,
        ge=1,
        description="Most image tokens a whole document may cost (first attempts; re-asks come "
        "on top); each page gets at most its fair share of what is left. Unset: no limit.",
    )
    global_view: bool = Field(
        False,
        description="Also send each tiled page whole (one 'anyres' request) for context; its "
        "answer only fills fields that the tiles left empty. Costs the page's anyres tokens, on "
        "top of page_budget_vs_anyres (out of page_token_budget when that is set).",
    )
    max_side_px: int = Field(
        2016,
        ge=336,
        description="Whole-page images are downscaled to this longest side before the processor "
        "sees them; the processor never keeps more than 1008 px anyway.",
    )


class PagesSettings(BaseModel):
    """The pages stage (`pipeline.pages`), between render and tiling: blank pages set aside,
    pages turned upright and small tilts corrected, each decision kept with the page."""

    blank: bool = Field(
        True,
        description="Set blank pages aside (no tiles, no model call): separator sheets, empty "
        "backs of duplex scans, scanner noise only. They are listed in the provenance; a "
        "document of only blank pages fails with category 'blank'.",
    )
    blank_max_content_mm2: float = Field(
        8.0,
        ge=0,
        description="A page whose text-like ink (specks, solid fills, punch holes and the "
        "sheet's dark edges left out) covers at most this many mm² is blank. 8 mm² is about "
        "one character of 12 pt text: a lone page number is still content (a page is never "
        "dropped on a guess); scanner noise measures 0 (bench/orientation.py --blank).",
    )
    orientation: Literal["auto", "text", "ink", "osd", "ocr-vote", "off"] = Field(
        "auto",
        description="How a page's orientation (0/90/180/270) is found before tiling: 'text' "
        "(the direction of a PDF's text layer as rendered, ~1 ms; pages without one are left "
        "alone), 'ink' (line structure and baselines in the page's ink, ~200 ms), 'osd' "
        "(Tesseract's orientation detection, ~1.5 s), 'ocr-vote' (Tesseract OCR of the page "
        "turned four ways at 150 DPI, the turn that reads clearly the most confident words, "
        "~2 s), 'auto' (the text layer where a page has one, else the ink, Tesseract's OSD "
        "where the ink is not sure, and the OCR vote where OSD is not sure either: the "
        "default, which turned no page the wrong way in bench/orientation.py), 'off'. A page "
        "no method is sure about is left as rendered.",
    )
    ink_min_confidence: float = Field(
        0.7,
        ge=0,
        le=1,
        description="'auto'/'ink': the ink measure decides alone at or above this confidence "
        "(0..1); at 0.6 it turned two sideways receipt photos the wrong way "
        "(bench/orientation.py).",
    )
    osd_min_confidence: float = Field(
        2.0,
        ge=0,
        description="Tesseract's orientation confidence at or above which its answer is taken.",
    )
    deskew: bool = Field(
        True, description="Correct a small tilt (scans) before tiling, up to max_skew_deg."
    )
    max_skew_deg: float = Field(5.0, gt=0, le=10, description="Largest tilt corrected, degrees.")
    min_skew_deg: float = Field(
        0.3, ge=0, description="Smaller tilts are left alone (not worth a resampling)."
    )


class DuplicatesSettings(BaseModel):
    """The duplicate check after extraction: an invoice the store already holds (same seller and
    number, or a near match) makes the record needs_review, naming the earlier document."""

    enabled: bool = Field(True, description="Compare each new invoice with those stored.")
    near_total_share: float = Field(
        0.01, ge=0, le=1, description="Near match: totals within this share of each other."
    )
    near_days: int = Field(
        30, ge=0, description="Near match: issue dates at most this many days apart."
    )
    near_edit_distance: int = Field(
        2,
        ge=0,
        description="Near match: normalized invoice numbers within this edit distance.",
    )


class SplitSettings(BaseModel):
    """Bundles: a multi-page file that holds several documents (a post room's 40-page scan)
    becomes child documents, each a page range of the file, extracted and stored on its own."""

    mode: Literal["auto", "never"] = Field(
        "auto",
        description="'auto': each page of a multi-page file is judged the first page of a "
        "document or a continuation, from its words (page markers, a new document number, "
        "a heading under a new letterhead, a blank separator sheet), and the model where those "
        "do not decide; 'never': a file is one document. The decision is stored with the file "
        "and kept on reruns; `docextract split DOC --pages 1-2,3` corrects it.",
    )
    min_confidence: float = Field(
        0.8,
        ge=0.5,
        le=1,
        description="A boundary decided with less confidence is unsure: the model is asked "
        "(split.ask_model), and if it is not sure either the documents on both sides of it go "
        "to review.",
    )
    ask_model: bool = Field(
        True,
        description="Ask the model (one constrained request per page) where the page's words do "
        "not decide.",
    )


class ExtractionSettings(BaseModel):
    max_reasks: int = Field(
        2, ge=0, description="Re-asks with the validation error after a bad output."
    )
    timeout_s: float = Field(
        1800.0,
        gt=0,
        description="Time limit for extracting one document (all schemas; rendering overlaps "
        "it, and has its own raster.document_timeout_s); pages not done by then fail with "
        "category 'timeout'.",
    )
    max_failed_page_share: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Error budget: a document whose failed pages exceed this share ends failed, "
        "below it partial.",
    )


class GroundingSettings(BaseModel):
    """The page's own words and how values are vouched for (pipeline/evidence, README
    "Grounding and confidence")."""

    enabled: bool = Field(
        True,
        description="Read each page's words (text layer, OCR) beside rendering and ground every "
        "value of a record in them, with a per-field confidence; off: no words, no evidence.",
    )
    ocr: Literal["auto", "always", "never"] = Field(
        "auto",
        description="'auto': OCR (Tesseract) only pages whose text layer is missing or unusable "
        "(no words, garbage glyphs, text that does not cover the ink); 'always': OCR every page "
        "(a missing Tesseract is then a configuration error); 'never': text layer only.",
    )
    lang: str = Field(
        "eng",
        pattern=r"^[A-Za-z_]+(\+[A-Za-z_]+)*$",
        description="Tesseract language(s), e.g. 'eng' or 'deu+eng' (its traineddata must be "
        "installed).",
    )
    max_words: int = Field(5000, ge=1, description="Words kept per page; the rest are dropped.")
    max_word_chars: int = Field(64, ge=1, description="Characters kept per word.")
    max_chars: int = Field(60_000, ge=1, description="Text-layer characters read per page.")
    text_layer_s: float = Field(
        2.0, gt=0, description="Seconds reading one page's text layer may take."
    )
    ocr_s: float = Field(60.0, gt=0, description="Seconds one Tesseract run may take.")
    min_confidence: dict[str, float] = Field(
        default_factory=lambda: {"*": 0.5},
        description="Per schema name ('*' for any other): a field whose confidence is below "
        "this adds a review reason. 0 turns the check off.",
    )

    def threshold(self, schema_name: str) -> float:
        """The confidence threshold for `schema_name` (its own, else '*', else 0.5)."""
        return self.min_confidence.get(schema_name, self.min_confidence.get("*", 0.5))


class RoutingSettings(BaseModel):
    candidates: list[str] = Field(
        default_factory=lambda: ["invoice", "form", "table", "chart"],
        description="Schemas `--schema auto` chooses among (names, module:Model or JSON files).",
    )
    min_probability: float = Field(
        0.5,
        ge=0,
        le=1,
        description="A routing choice below this probability makes the record needs_review.",
    )


class ReviewSettings(BaseModel):
    token: SecretStr | None = Field(
        None,
        description="Shared secret of the review desk (DOCEXTRACT_REVIEW__TOKEN): required to "
        "bind anything but 127.0.0.1; sent as a cookie after `?token=` or a header. Never logged.",
    )
    base_url: str = Field(
        "http://127.0.0.1:8765",
        description="Where people open the desk (links in the report and `docextract status`).",
    )


class PrefectSettings(BaseModel):
    """Which Prefect server the commands that run flows talk to. A PREFECT_API_URL (environment
    or Prefect profile) always wins: that server is used and none is started."""

    server: Literal["background", "ephemeral"] = Field(
        "background",
        description="'background': a local Prefect server started on first use under `home`, "
        "kept running and reused by every later command (its history and UI stay); "
        "'ephemeral': Prefect's temporary server inside each command (about 20 s, no history).",
    )
    home: Path = Field(
        default_factory=_default_prefect_home,
        description="PREFECT_HOME of the background server: its database, log and state file.",
    )
    port: int = Field(
        4200,
        ge=1,
        le=65535,
        description="Port tried first for the background server on 127.0.0.1; when taken, the "
        "next free one (the choice is kept in home/server.json).",
    )


class Settings(BaseSettings):
    """Everything configurable, in groups. Build it once at the edge and pass it down."""

    model_config = SettingsConfigDict(
        env_prefix="DOCEXTRACT_", env_nested_delimiter="__", extra="ignore"
    )

    db_url: SecretStr = Field(
        SecretStr("sqlite:///docextract.db"),
        description="SQLAlchemy URL. Kept secret so it never reaches logs or Prefect parameters.",
    )
    cache_dir: Path = Field(default_factory=_default_cache_dir)
    schemas: list[str] = Field(default_factory=lambda: ["invoice"])
    workers: int = Field(
        4,
        ge=1,
        description="Documents in flight at once in one process: more of them keep the model's "
        "batches full (bench/overhead.py: 4.5 pages/s at 4, 3.8 at 2, 2-core CPU).",
    )
    claim_lease_s: float = Field(
        3600.0,
        gt=0,
        description="Seconds a claim on a unit of work stays valid without renewal; a crashed "
        "worker's claims are taken over after it (a live worker renews between stages).",
    )
    passwords_file: Path | None = Field(
        None,
        description="JSON file of PDF passwords by file name, path or sha256 ('*': tried on "
        "any encrypted file). Its contents are never logged or stored.",
    )
    inbox_skip: list[str] = Field(
        default_factory=lambda: ["*.json", "*.md", "*.txt", "*.csv", "*.py", "*.log"],
        description="File-name globs skipped when a folder is recursed (sidecars such as "
        "ground truth). Files named explicitly are never skipped.",
    )
    inbox_follow_outside: bool = Field(
        False,
        description="Follow symlinks in an inbox folder that lead outside it. Off: such links "
        "are skipped with a reason, so an inbox cannot make the run read /etc/shadow.",
    )
    model: ModelSettings = Field(default_factory=lambda: ModelSettings())
    raster: RasterSettings = Field(default_factory=lambda: RasterSettings())
    pages: PagesSettings = Field(default_factory=lambda: PagesSettings())
    tiling: TilingSettings = Field(default_factory=lambda: TilingSettings())
    extraction: ExtractionSettings = Field(default_factory=lambda: ExtractionSettings())
    routing: RoutingSettings = Field(default_factory=lambda: RoutingSettings())
    duplicates: DuplicatesSettings = Field(default_factory=lambda: DuplicatesSettings())
    split: SplitSettings = Field(default_factory=lambda: SplitSettings())
    grounding: GroundingSettings = Field(default_factory=lambda: GroundingSettings())
    review: ReviewSettings = Field(default_factory=lambda: ReviewSettings())
    prefect: PrefectSettings = Field(default_factory=lambda: PrefectSettings())

    @property
    def page_cache_dir(self) -> Path:
        return self.cache_dir / "pages"

    @property
    def model_cache_dir(self) -> Path:
        return self.cache_dir / "models"
