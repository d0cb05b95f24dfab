"""The one settings object, built once at the edge (CLI, flow) and passed down.

Every value can come from the environment with the prefix `DOCEXTRACT_` and `__` between groups:
`DOCEXTRACT_DB_URL`, `DOCEXTRACT_MODEL__NAME=llava-next-13b`, `DOCEXTRACT_RASTER__DPI=150`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "docextract"


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
    quantization: Literal["none", "4bit", "8bit"] = Field(
        "none", description="bitsandbytes loading, so the 7B model fits a 16 GB card (GPU only)."
    )
    batch_size: int = Field(8, ge=1, description="Most requests per generate() call.")
    max_new_tokens: int = Field(768, ge=16, description="Hard cap on output tokens per request.")
    local_files_only: bool = Field(
        False, description="Never contact the hub; load from the local cache or a folder only."
    )


class RasterSettings(BaseModel):
    dpi: int = Field(200, ge=36, le=600, description="Rendering resolution for PDF pages.")
    chunk_pages: int = Field(
        4, ge=1, description="Pages rendered per poppler call (memory stays flat)."
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
    render_timeout_s: float = Field(60.0, gt=0, description="Time limit per chunk of pages.")
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
        description="pdftoppm processes and PNG-encoding threads per render worker; lower it "
        "when several documents render at once.",
    )
    fallback_renderer: Literal["pdfium", "none"] = Field(
        "pdfium",
        description="Second PDF renderer (pypdfium2) tried, in the same sandboxed subprocess, on "
        "files poppler cannot open and on pages poppler fails, times out or crashes on. 'none' "
        "uses poppler only.",
    )


class TilingSettings(BaseModel):
    strategy: Literal["anyres"] = Field(
        "anyres", description="'anyres': the whole page, resized by the model's own processor."
    )
    max_side_px: int = Field(
        2016,
        ge=336,
        description="Pages are downscaled to this longest side before the processor sees them; "
        "the processor never keeps more than 1008 px anyway.",
    )


class ExtractionSettings(BaseModel):
    max_reasks: int = Field(
        2, ge=0, description="Re-asks with the validation error after a bad output."
    )
    max_failed_page_share: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Error budget: a document whose failed pages exceed this share ends failed, "
        "below it partial.",
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
    workers: int = Field(2, ge=1, description="Documents in flight at once in one process.")
    inbox_skip: list[str] = Field(
        default_factory=lambda: ["*.json", "*.md", "*.txt", "*.csv", "*.py", "*.log"],
        description="File-name globs skipped when a folder is recursed (sidecars such as "
        "ground truth). Files named explicitly are never skipped.",
    )
    model: ModelSettings = Field(default_factory=lambda: ModelSettings())
    raster: RasterSettings = Field(default_factory=lambda: RasterSettings())
    tiling: TilingSettings = Field(default_factory=lambda: TilingSettings())
    extraction: ExtractionSettings = Field(default_factory=lambda: ExtractionSettings())

    @property
    def page_cache_dir(self) -> Path:
        return self.cache_dir / "pages"

    @property
    def model_cache_dir(self) -> Path:
        return self.cache_dir / "models"
