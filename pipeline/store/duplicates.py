"""The duplicate check's SQL: candidates for a new invoice through the indexed `duplicate_keys`
(never every record), the keys and pairs an extraction leaves when it is saved, the pairs
`docextract duplicates` lists, and a person's "distinct" decision, which clears the reason.

Each function takes a Session; the caller owns the transaction. The rule itself (what counts as
the same invoice) is `pipeline.duplicates`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import and_, delete, or_, select
from sqlalchemy.orm import Session

from pipeline.duplicates import Candidate, DuplicateEvidence, InvoiceKey, match_kind
from pipeline.duplicates.match import SAME_NUMBER
from pipeline.settings import DuplicatesSettings
from pipeline.store.claims import insert_ignoring_conflicts
from pipeline.store.models import (
    Document,
    DocumentPath,
    DuplicateKey,
    DuplicatePair,
    Extraction,
    ExtractionEvent,
    utcnow,
)
from pipeline.store.reviews import risk_columns
from pipeline.types import Status


def find_candidates(
    session: Session, document_id: int, key: InvoiceKey, settings: DuplicatesSettings
) -> list[Candidate]:
    """Stored invoices of other documents that `key` may duplicate, one per document (a same
    number before a near match). Left out: documents a person marked distinct from this one,
    and documents already found to duplicate this one (this one is their original)."""
    close: list[object] = []
    if key.number is not None:
        close.append(DuplicateKey.number_key == key.number)
    if key.total is not None and key.issue_date is not None:
        slack = abs(key.total) * Decimal(str(settings.near_total_share))
        days = timedelta(days=settings.near_days)
        close.append(
            and_(
                DuplicateKey.total.between(key.total - slack, key.total + slack),
                DuplicateKey.issue_date.between(key.issue_date - days, key.issue_date + days),
            )
        )
    if not close:
        return []
    rows = session.execute(
        select(
            DuplicateKey.document_id,
            DuplicateKey.number_key,
            DuplicateKey.total,
            DuplicateKey.issue_date,
            DuplicateKey.label,
        )
        .where(
            DuplicateKey.seller_key.in_(key.sellers),
            DuplicateKey.document_id != document_id,
            or_(*close),  # type: ignore[arg-type]
        )
        .order_by(DuplicateKey.document_id, DuplicateKey.id)
    ).all()
    found: dict[int, Candidate] = {}
    for other_id, number, total, issued, label in rows:
        candidate = Candidate(other_id, "", number, total, issued, label)
        kind = match_kind(key, candidate, settings)
        if kind is None or (other_id in found and found[other_id].kind == SAME_NUMBER):
            continue
        found[other_id] = Candidate(other_id, "", number, total, issued, label, kind)
    for other_id in _settled(session, document_id, list(found)):
        found.pop(other_id)
    names = document_names(session, list(found))
    return [
        Candidate(
            c.document_id,
            names.get(c.document_id, f"document {c.document_id}"),
            c.number,
            c.total,
            c.issue_date,
            c.label,
            c.kind,
        )
        for c in found.values()
    ]


def _settled(session: Session, document_id: int, others: list[int]) -> set[int]:
    """Of `others`: those marked distinct from `document_id`, and those found to duplicate it."""
    if not others:
        return set()
    pairs = session.execute(
        select(
            DuplicatePair.document_id, DuplicatePair.original_id, DuplicatePair.distinct_at
        ).where(
            or_(
                and_(
                    DuplicatePair.document_id == document_id, DuplicatePair.original_id.in_(others)
                ),
                and_(
                    DuplicatePair.original_id == document_id, DuplicatePair.document_id.in_(others)
                ),
            )
        )
    ).all()
    settled = set()
    for later, original, distinct_at in pairs:
        other = original if later == document_id else later
        if distinct_at is not None or original == document_id:
            settled.add(other)
    return settled


def document_names(session: Session, document_ids: list[int]) -> dict[int, str]:
    """The name each document was last seen under."""
    if not document_ids:
        return {}
    rows = session.execute(
        select(DocumentPath.document_id, DocumentPath.name)
        .where(DocumentPath.document_id.in_(document_ids))
        .order_by(DocumentPath.last_seen_at, DocumentPath.id)
    )
    return {document_id: name for document_id, name in rows}  # the last one wins


def save_evidence(
    session: Session, extraction_id: int, document_id: int, evidence: DuplicateEvidence
) -> None:
    """Keep this extraction's key (replacing an earlier attempt's) and the pairs it found."""
    session.execute(delete(DuplicateKey).where(DuplicateKey.extraction_id == extraction_id))
    key = evidence.key
    for seller in key.sellers:
        session.add(
            DuplicateKey(
                extraction_id=extraction_id,
                document_id=document_id,
                seller_key=seller,
                number_key=key.number,
                total=key.total,
                issue_date=key.issue_date,
                label=key.label,
            )
        )
    for match in evidence.matches:
        insert_ignoring_conflicts(
            session,
            DuplicatePair,
            {
                "document_id": document_id,
                "original_id": match.document_id,
                "kind": match.kind,
                "reason": match.reason,
                "found_at": utcnow(),
            },
            ["document_id", "original_id"],
        )


@dataclass(frozen=True)
class PairRow:
    """One pair for `docextract duplicates`: the later document, its possible original."""

    document: str
    document_sha256: str
    original: str
    original_sha256: str
    kind: str
    reason: str
    found_at: datetime
    distinct_by: str | None

    def to_json(self) -> dict[str, object]:
        return {**self.__dict__, "found_at": self.found_at.isoformat()}


def list_pairs(session: Session, since: datetime | None = None) -> list[PairRow]:
    """Pairs found (newest first), `since` a time if given; distinct ones included, marked."""
    query = select(DuplicatePair).order_by(DuplicatePair.found_at.desc(), DuplicatePair.id.desc())
    if since is not None:
        query = query.where(DuplicatePair.found_at >= since)
    pairs = list(session.scalars(query))
    ids = {p.document_id for p in pairs} | {p.original_id for p in pairs}
    names = document_names(session, list(ids))
    hashes = dict(
        session.execute(select(Document.id, Document.sha256).where(Document.id.in_(ids))).all()
    )
    return [
        PairRow(
            names.get(p.document_id, ""),
            hashes.get(p.document_id, ""),
            names.get(p.original_id, ""),
            hashes.get(p.original_id, ""),
            p.kind,
            p.reason,
            p.found_at,
            p.distinct_by,
        )
        for p in pairs
    ]


def mark_distinct(session: Session, first: int, second: int, by: str) -> int:
    """Record that documents `first` and `second` are different invoices; remove the duplicate
    reason from the current records of either (a record left without reasons goes from
    needs_review to succeeded, with a history event). Returns how many records changed."""
    pairs = list(
        session.scalars(
            select(DuplicatePair).where(
                or_(
                    and_(DuplicatePair.document_id == first, DuplicatePair.original_id == second),
                    and_(DuplicatePair.document_id == second, DuplicatePair.original_id == first),
                )
            )
        )
    )
    now = utcnow()
    if not pairs:  # marked before any check found it: the check will never raise it
        session.add(
            DuplicatePair(
                document_id=max(first, second),
                original_id=min(first, second),
                kind="manual",
                reason="",
                found_at=now,
                distinct_at=now,
                distinct_by=by,
            )
        )
        return 0
    changed = 0
    for pair in pairs:
        pair.distinct_at, pair.distinct_by = now, by
        for extraction in session.scalars(
            select(Extraction).where(Extraction.document_id == pair.document_id)
        ):
            if pair.reason in (extraction.review_reasons or []):
                _clear(session, extraction, pair.reason, by)
                changed += 1
    return changed


def _clear(session: Session, extraction: Extraction, reason: str, by: str) -> None:
    reasons = [r for r in extraction.review_reasons if r != reason]
    extraction.review_reasons = reasons
    if extraction.status == Status.NEEDS_REVIEW.value and not reasons:
        extraction.status = Status.SUCCEEDED.value
    extraction.reason_count = risk_columns({"review_reasons": reasons})["reason_count"]
    extraction.version += 1
    extraction.updated_at = utcnow()
    session.add(
        ExtractionEvent(
            extraction_id=extraction.id,
            run_id=extraction.run_id,
            status=extraction.status,
            attempt=extraction.attempts,
            worker=by,
            review_reasons=reasons,
            error_message=f"marked distinct by {by}: '{reason}' cleared",
        )
    )
