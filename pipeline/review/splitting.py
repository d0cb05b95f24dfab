"""The desk's view of a bundle: which pages of which file a record reads, how the file is split,
and a person's correction of the split (the same rule as `docextract split`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from pipeline.split import Split, describe, person_split
from pipeline.store import bundles
from pipeline.store.models import Document, Extraction
from pipeline.store.queries import last_seen_paths


@dataclass(frozen=True)
class BundleView:
    """What the document page says about the file: its name and page count, the pages this
    record reads ("all" for a whole file), the file's parts as `docextract split` writes them,
    who split it, and the boundaries that are unsure."""

    file: str
    page_count: int
    pages: str
    parts: str
    by: str
    unsure: tuple[str, ...]


def bundle_view(extraction: Extraction, min_confidence: float) -> BundleView | None:
    """None for a file never split (one document by nature or by setting)."""
    document = extraction.document
    file = document.parent or document
    if file.split is None or file.page_count is None:
        return None
    split = Split.from_json(file.split)
    paths = last_seen_paths(file)
    unsure = tuple(
        f"page {b.page}: {'starts a document' if b.starts else 'continues'} "
        f"({b.confidence:.2f}, {b.why})"
        for b in split.unsure(min_confidence)
    )
    return BundleView(
        Path(paths[0]).name if paths else file.sha256[:12],
        file.page_count,
        bundles.pages_label(document) if document.parent is not None else "all",
        describe(split.parts),
        split.by,
        unsure,
    )


def change_split(session: Session, extraction_id: int, pages: str, reviewer: str) -> str:
    """Replace the split of the file this extraction reads with `pages` (`1-2,3,4-7`); what
    changed, in words. Raises ValueError (for the person) on pages that do not fit the file."""
    extraction = session.get(Extraction, extraction_id)
    if extraction is None:
        raise LookupError(f"no extraction {extraction_id}")
    document = extraction.document
    file: Document = document.parent or document
    if file.page_count is None:
        raise ValueError("the file's pages are not known yet: it has not been rendered")
    wanted = person_split(file.page_count, pages, reviewer, "review desk")
    removed = bundles.replace_split(session, file.id, wanted.to_json(), keep=set(wanted.parts))
    gone = "; ".join(
        f"pages {r['pages']} ({', '.join(e['status'] for e in r['extractions']) or 'no record'})"
        for r in removed
    )
    paths = last_seen_paths(file)
    where = paths[0] if paths else file.sha256[:12]
    return (
        f"{Path(where).name} is now split as {describe(wanted.parts)}"
        + (f"; removed: {gone}" if gone else "")
        + f". The new documents are extracted by the next run over the file "
        f"(docextract run {where})."
    )
