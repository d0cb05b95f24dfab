"""SQLAlchemy 2.x models: documents, their paths and pages, runs, extractions and their history.

An extraction's identity is the unit of work of the design: (document, schema, schema version,
model id, prompt version). The `extractions` row is the current result; `extraction_events` is
append-only, one row per status change, so nothing about an earlier attempt is lost.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    DateTime,
    ForeignKey,
    Index,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

JSONType = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSONType,
        list[Any]: JSONType,
        datetime: DateTime(timezone=True),
    }


class Document(Base):
    """One row per unique content (sha256): the same bytes under two names are one document."""

    __tablename__ = "documents"

    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    media_type: Mapped[str | None] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    page_count: Mapped[int | None]
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A bundle (one file, several documents): the file's split (`pipeline.split.Split` as JSON)
    # on the file's row; each child document is a page range of its parent (revision 0005). A
    # child's `sha256` is not a file's hash but its key, sha256("<parent sha256>:<first>-<last>").
    split: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("documents.id", ondelete="CASCADE"), index=True
    )
    first_page: Mapped[int | None]
    last_page: Mapped[int | None]

    paths: Mapped[list[DocumentPath]] = relationship(
        back_populates="document", order_by="DocumentPath.id", cascade="all, delete-orphan"
    )
    pages: Mapped[list[Page]] = relationship(
        back_populates="document", order_by="Page.number", cascade="all, delete-orphan"
    )
    extractions: Mapped[list[Extraction]] = relationship(
        back_populates="document", order_by="Extraction.id", cascade="all, delete-orphan"
    )
    parts: Mapped[list[Document]] = relationship(
        back_populates="parent", order_by="Document.first_page", cascade="all, delete-orphan"
    )
    parent: Mapped[Document | None] = relationship(back_populates="parts", remote_side=[id])


class DocumentPath(Base):
    """Every path a document was seen under (the file name users search by)."""

    __tablename__ = "document_paths"
    __table_args__ = (UniqueConstraint("document_id", "path"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(String(255), index=True)
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)

    document: Mapped[Document] = relationship(back_populates="paths")


class Page(Base):
    __tablename__ = "pages"
    __table_args__ = (UniqueConstraint("document_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    number: Mapped[int]
    width: Mapped[int]
    height: Mapped[int]
    dpi: Mapped[int]
    rotation: Mapped[int] = mapped_column(default=0)
    render_seconds: Mapped[float] = mapped_column(default=0.0)

    document: Mapped[Document] = relationship(back_populates="pages")


class Run(Base):
    """One invocation (CLI run, rerun, scheduled flow run): who started it, with what, results."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    started_by: Mapped[str] = mapped_column(String(255))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    parameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    # The Prefect deployment that started it (the nightly schedule, a rerun from the UI); None
    # for a plain CLI run.
    deployment: Mapped[str | None] = mapped_column(String(255))


class Extraction(Base):
    """The current result of one unit of work.

    Unique per (document, schema, schema version, model id, prompt version).
    """

    __tablename__ = "extractions"
    __table_args__ = (
        UniqueConstraint(
            "document_id",
            "schema_name",
            "schema_version",
            "model_id",
            "prompt_version",
            name="uq_extractions_unit_of_work",
        ),
        Index("ix_extractions_status", "status"),
        Index("ix_extractions_run_id", "run_id"),
        Index("ix_extractions_updated_at", "updated_at"),
        Index("ix_extractions_status_updated_at", "status", "updated_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    schema_name: Mapped[str] = mapped_column(String(128))
    schema_version: Mapped[str] = mapped_column(String(32))
    model_id: Mapped[str] = mapped_column(String(255))
    prompt_version: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    error_category: Mapped[str | None] = mapped_column(String(32))
    error_message: Mapped[str | None] = mapped_column(Text)
    record: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    review_reasons: Mapped[list[Any]] = mapped_column(default=list)
    errors: Mapped[list[Any]] = mapped_column(default=list)
    raw_outputs: Mapped[list[Any]] = mapped_column(default=list)
    provenance: Mapped[dict[str, Any]] = mapped_column(default=dict)
    timings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    pages_total: Mapped[int] = mapped_column(default=0)
    pages_failed: Mapped[int] = mapped_column(default=0)
    image_tokens: Mapped[int] = mapped_column(default=0)
    input_tokens: Mapped[int] = mapped_column(default=0)
    output_tokens: Mapped[int] = mapped_column(default=0)
    model_calls: Mapped[int] = mapped_column(default=0)
    attempts: Mapped[int] = mapped_column(default=0)
    seconds: Mapped[float] = mapped_column(default=0.0)
    # Per-field confidence (field path -> 0..1) where the backend gives token log-probabilities.
    field_confidence: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # CPU time of the work on this document (this process and its render subprocess) and time
    # spent in generate() on a GPU; None where not measured (rows written before 0002).
    cpu_seconds: Mapped[float | None]
    gpu_seconds: Mapped[float | None]
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    claimed_by: Mapped[str | None] = mapped_column(String(255))
    claimed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Bumped by every write of the row (claim, outcome, review decision): the review desk's
    # optimistic check refuses a save made on an older version (revision 0003).
    version: Mapped[int] = mapped_column(default=1, server_default="1")
    # The review queue's risk order, kept beside the JSON it comes from: the lowest per-field
    # confidence (None: none measured) and the number of review reasons.
    min_confidence: Mapped[float | None]
    reason_count: Mapped[int] = mapped_column(default=0, server_default="0")

    document: Mapped[Document] = relationship(back_populates="extractions")
    events: Mapped[list[ExtractionEvent]] = relationship(
        back_populates="extraction", order_by="ExtractionEvent.id", cascade="all, delete-orphan"
    )

    @property
    def reason(self) -> str | None:
        """Why it is not simply succeeded, on one line: the error message, or the first review
        reason and how many more there are."""
        return one_line_reason(self.error_message, self.review_reasons)


def one_line_reason(error_message: str | None, review_reasons: list[str] | None) -> str | None:
    """The error message, else the first review reason with a count of the others."""
    if error_message:
        return error_message
    if not review_reasons:
        return None
    more = len(review_reasons) - 1
    return review_reasons[0] + (f" (+{more} more)" if more else "")


class ExtractionEvent(Base):
    """Append-only history: one row per status change of an extraction, with what it held.

    A final event (succeeded, needs_review, partial, failed) is a full snapshot of that attempt's
    outcome (record, errors, raw outputs, tokens, timings), so a rerun that replaces the current
    result loses nothing; per-run cost metrics are computed from these rows. Outcome columns are
    None on claim/release events and on events written before revision 0002.
    """

    __tablename__ = "extraction_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    extraction_id: Mapped[int] = mapped_column(
        ForeignKey("extractions.id", ondelete="CASCADE"), index=True
    )
    run_id: Mapped[int | None] = mapped_column(
        ForeignKey("runs.id", ondelete="SET NULL"), index=True
    )
    at: Mapped[datetime] = mapped_column(default=utcnow)
    status: Mapped[str] = mapped_column(String(16))
    attempt: Mapped[int] = mapped_column(default=0)
    worker: Mapped[str | None] = mapped_column(String(255))
    error_category: Mapped[str | None] = mapped_column(String(32))
    error_message: Mapped[str | None] = mapped_column(Text)
    record: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    review_reasons: Mapped[list[Any]] = mapped_column(default=list)
    errors: Mapped[list[Any] | None] = mapped_column(JSONType)
    raw_outputs: Mapped[list[Any] | None] = mapped_column(JSONType)
    provenance: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    timings: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    field_confidence: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    pages_total: Mapped[int | None]
    pages_failed: Mapped[int | None]
    image_tokens: Mapped[int | None]
    input_tokens: Mapped[int | None]
    output_tokens: Mapped[int | None]
    model_calls: Mapped[int | None]
    seconds: Mapped[float | None]
    cpu_seconds: Mapped[float | None]
    gpu_seconds: Mapped[float | None]

    extraction: Mapped[Extraction] = relationship(back_populates="events")


class Review(Base):
    """One decision at the review desk (append-only): who, when, what the record was before and
    after, the per-field diff, and which model and prompt version made the original."""

    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(primary_key=True)
    extraction_id: Mapped[int] = mapped_column(
        ForeignKey("extractions.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    reviewer: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(16))  # approved, corrected or rejected
    reason: Mapped[str | None] = mapped_column(Text)  # why it was rejected
    original_record: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    corrected_record: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # [{"path": "total", "before": "4,645.14", "after": "4645.14"}, ...]
    diff: Mapped[list[Any]] = mapped_column(default=list)
    remaining_reasons: Mapped[list[Any]] = mapped_column(default=list)
    schema_name: Mapped[str] = mapped_column(String(128))
    schema_version: Mapped[str] = mapped_column(String(32))
    model_id: Mapped[str] = mapped_column(String(255))
    prompt_version: Mapped[str] = mapped_column(String(32))
    previous_status: Mapped[str] = mapped_column(String(16))
    version: Mapped[int]  # the extraction's version this decision wrote


class DuplicateKey(Base):
    """What identifies a stored invoice, one row per seller identity it has (VAT id, IBAN,
    normalized name), written when its extraction is saved (revision 0004): the duplicate check
    of a new invoice reads these through their indexes, never every record."""

    __tablename__ = "duplicate_keys"
    __table_args__ = (
        UniqueConstraint("extraction_id", "seller_key", name="uq_duplicate_keys_extraction_seller"),
        Index("ix_duplicate_keys_seller_number", "seller_key", "number_key"),
        Index("ix_duplicate_keys_seller_date", "seller_key", "issue_date"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    extraction_id: Mapped[int] = mapped_column(ForeignKey("extractions.id", ondelete="CASCADE"))
    document_id: Mapped[int] = mapped_column(
        ForeignKey("documents.id", ondelete="CASCADE"), index=True
    )
    seller_key: Mapped[str] = mapped_column(String(160))
    number_key: Mapped[str | None] = mapped_column(String(64))
    total: Mapped[Decimal | None] = mapped_column(Numeric(18, 2))
    issue_date: Mapped[date | None] = mapped_column(Date)
    label: Mapped[str] = mapped_column(Text)


class DuplicatePair(Base):
    """A possible duplicate found: `document_id` (the later one, whose record went to review)
    may be the same invoice as `original_id`. A person who marks the pair distinct clears the
    reason; the check never raises the pair again."""

    __tablename__ = "duplicate_pairs"
    __table_args__ = (UniqueConstraint("document_id", "original_id", name="uq_duplicate_pairs"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    original_id: Mapped[int] = mapped_column(
        ForeignKey("documents.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))  # same_number or near
    reason: Mapped[str] = mapped_column(Text)
    found_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    distinct_at: Mapped[datetime | None]
    distinct_by: Mapped[str | None] = mapped_column(String(255))
