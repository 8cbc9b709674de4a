"""Appending to and reading the hash-chained audit log."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, insert, select
from sqlalchemy.orm import Session

from entrasync.domain.audit import FIELDS, GENESIS, AuditEvent, format_at, record_hash
from entrasync.store.schema import AuditRow


def append_locked(
    session: Session,
    events: Sequence[AuditEvent],
    *,
    actor: str,
    now: datetime,
    run_id: str | None = None,
) -> list[int]:
    """Chain `events` onto the log; the caller holds the audit lock.

    The head is read under the audit lock, so concurrent writers queue instead of forking;
    the unique `prev_hash` constraint would reject a fork even if they did not.
    """
    head = session.execute(
        select(AuditRow.seq, AuditRow.hash).order_by(AuditRow.seq.desc()).limit(1)
    ).first()
    seq, prev_hash = (head[0], head[1]) if head else (0, GENESIS)
    records = []
    at = format_at(now)
    for event in events:
        seq += 1
        record: dict[str, Any] = {
            "seq": seq,
            "at": at,
            "run_id": run_id,
            "actor": actor,
            "action": event.action,
            "user_id": event.user_id,
            "entra_object_id": event.entra_object_id,
            "identifiers": event.identifiers,
            "reason": event.reason,
            "details": event.details,
        }
        digest = record_hash(record, prev_hash)
        records.append({**record, "prev_hash": prev_hash, "hash": digest})
        prev_hash = digest
    # A bulk INSERT (one executemany, no ORM object per record): a purge of a whole Delete
    # group writes thousands of records in one transaction.
    session.execute(insert(AuditRow), records)
    return [r["seq"] for r in records]


def as_dict(row: AuditRow) -> dict[str, Any]:
    """The hashed fields, then the chain's links: what `verify_chain` checks."""
    return {name: getattr(row, name) for name in (*FIELDS, "prev_hash", "hash")}


@dataclass(frozen=True)
class AuditFilter:
    since: str | None = None
    until: str | None = None
    action: str | None = None  # `pending.*`: `*` matches anything
    user_id: int | None = None
    run_id: str | None = None


def iter_all(session: Session, batch: int = 5000) -> Iterator[dict[str, Any]]:
    """Every record in seq order, streamed in batches (the log grows without bound)."""
    return iter_matching(session, AuditFilter(), batch)


def iter_matching(
    session: Session, flt: AuditFilter, batch: int = 5000
) -> Iterator[dict[str, Any]]:
    """The records `flt` matches, in seq order, streamed in batches."""
    last = 0
    while True:
        rows = session.scalars(_filtered(flt).where(AuditRow.seq > last).limit(batch)).all()
        if not rows:
            return
        for row in rows:
            yield as_dict(row)
        last = rows[-1].seq


def _filtered(flt: AuditFilter) -> Select[AuditRow]:
    query = select(AuditRow).order_by(AuditRow.seq)
    if flt.since:
        query = query.where(AuditRow.at >= flt.since)
    if flt.until:
        query = query.where(AuditRow.at < flt.until)
    if flt.action:
        query = query.where(AuditRow.action.like(_like(flt.action), escape="\\"))
    if flt.user_id is not None:
        query = query.where(AuditRow.user_id == flt.user_id)
    if flt.run_id:
        query = query.where(AuditRow.run_id == flt.run_id)
    return query


def _like(pattern: str) -> str:
    """`pending.*` -> a LIKE pattern; `_` and `%` in action names match only themselves."""
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


def record(session: Session, seq: int) -> dict[str, Any] | None:
    row = session.get(AuditRow, seq)
    return as_dict(row) if row is not None else None
