"""Bundles in the store: a file's split (on its Document row) and its child documents, each a
page range of the file with a Document row of its own (extractions, reviews, reruns as any
document). Each function takes a Session; the caller owns the transaction."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pipeline.store.claims import insert_ignoring_conflicts
from pipeline.store.models import Document, DocumentPath, Extraction, utcnow


@dataclass(frozen=True)
class FileSplit:
    """What the store knows about a file's split: the stored split (None: never decided) and
    whether the file was already extracted whole (then it is not split on its own)."""

    split: dict[str, Any] | None
    extracted_whole: bool
    page_count: int | None  # as last rendered (None: never rendered)


def part_key(parent_sha256: str, first: int, last: int) -> str:
    """A child document's key (its `sha256` column): stable for the same file and pages."""
    return hashlib.sha256(f"{parent_sha256}:{first}-{last}".encode()).hexdigest()


def file_split(session: Session, document_id: int) -> FileSplit:
    document = session.get(Document, document_id)
    assert document is not None
    extracted = session.scalar(
        select(func.count()).select_from(Extraction).where(Extraction.document_id == document_id)
    )
    return FileSplit(document.split, bool(extracted), document.page_count)


def save_split(session: Session, document_id: int, split: dict[str, Any]) -> dict[str, Any]:
    """Store the file's split, unless another worker stored one first: the stored one wins
    (one split per file; a person changes it with `replace_split`). Returns the stored split."""
    document = session.get(Document, document_id, with_for_update=True)
    assert document is not None
    if document.split is None:
        document.split = split
    document.page_count = document.page_count or split["page_count"]
    return document.split


def register_part(session: Session, parent_id: int, first: int, last: int) -> Document:
    """The child document for pages `first`..`last` of the file (created on first sight), seen
    under the file's paths."""
    parent = session.get(Document, parent_id)
    assert parent is not None
    key = part_key(parent.sha256, first, last)
    now = utcnow()
    values = {
        "sha256": key,
        "media_type": parent.media_type,
        "size_bytes": parent.size_bytes,
        "page_count": last - first + 1,
        "parent_id": parent.id,
        "first_page": first,
        "last_page": last,
        "first_seen_at": now,
        "last_seen_at": now,
    }
    insert_ignoring_conflicts(session, Document, values, ["sha256"])  # two runs at once: one row
    child = session.scalars(select(Document).where(Document.sha256 == key)).one()
    for path in parent.paths:
        row = {"document_id": child.id, "path": path.path, "name": path.name}
        insert_ignoring_conflicts(
            session,
            DocumentPath,
            {**row, "first_seen_at": now, "last_seen_at": now},
            ["document_id", "path"],
        )
    child.last_seen_at = now
    return child


def parts_of(session: Session, parent_id: int) -> list[Document]:
    """The file's child documents, in page order."""
    query = select(Document).where(Document.parent_id == parent_id).order_by(Document.first_page)
    return list(session.scalars(query))


def replace_split(
    session: Session, document_id: int, split: dict[str, Any], keep: set[tuple[int, int]]
) -> list[dict[str, Any]]:
    """A person's split replaces the stored one (kept in its `history`). Child documents whose
    page range is not in `keep`, and the file's own whole-file extractions when it becomes a
    bundle, are deleted with their extractions; what was deleted is returned (and recorded in
    the history): their page ranges and statuses."""
    document = session.get(Document, document_id, with_for_update=True)
    assert document is not None
    removed: list[dict[str, Any]] = []
    for child in parts_of(session, document_id):
        if (child.first_page, child.last_page) not in keep:
            removed.append(_removed(child, pages_label(child)))
            session.delete(child)
    if len(split["parts"]) > 1 and document.extractions:
        removed.append(_removed(document, "whole file"))
        for extraction in list(document.extractions):
            session.delete(extraction)
    history = list((document.split or {}).get("history", []))
    if document.split is not None:
        previous = {k: v for k, v in document.split.items() if k != "history"}
        history.append({"replaced": previous, "removed": removed, "at": utcnow().isoformat()})
    document.split = {**split, "history": history}
    return removed


def document_name(document: Document) -> str:
    """The name a person knows a document by: its file's most recently seen name, and for a
    bundle's document its pages there (`scan.pdf [pages 3-4]`)."""
    ordered = sorted(document.paths, key=lambda p: (p.last_seen_at, p.id))
    name = ordered[-1].name if ordered else ""
    return f"{name} [pages {pages_label(document)}]" if document.parent_id is not None else name


def pages_label(child: Document) -> str:
    """A child document's pages as `docextract split --pages` writes them: `3`, `4-7`."""
    first, last = child.first_page, child.last_page
    return f"{first}" if first == last else f"{first}-{last}"


def _removed(document: Document, pages: str) -> dict[str, Any]:
    return {
        "pages": pages,
        "extractions": [
            {"schema": e.schema_name, "status": e.status, "model": e.model_id}
            for e in document.extractions
        ],
    }
