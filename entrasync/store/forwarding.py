"""The delivery cursor of audit forwarding (table ``audit_forward``, migration 0008).

A target's row says which record it has received last (`delivered_seq`), since when delivery
is failing and why, and who holds the lease to forward to it. Records are read after the
cursor in seq order and the cursor moves only after a batch was delivered: at least once,
in order. The cursor can never skip a record: records are appended under the writers' lock,
which is held until commit (`UnitOfWork.lock`), so they become visible in seq order. Nothing
here is audited: a record about forwarding would itself need forwarding.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from entrasync.store.audit import as_dict
from entrasync.store.forward_rows import AuditForwardRow
from entrasync.store.schema import AuditRow
from entrasync.store.uow import UnitOfWork
from entrasync.store.upsert import insert_for

__all__ = [
    "AuditForwardRow",
    "Backlog",
    "advance",
    "backlog",
    "claim",
    "delivered_hash",
    "failed",
    "release",
    "rewind",
    "session_hash",
]


@dataclass(frozen=True)
class Backlog:
    target: str
    delivered_seq: int
    head_seq: int
    delivered_at: datetime | None
    failing_since: datetime | None
    last_error: str | None

    @property
    def waiting(self) -> int:
        return max(self.head_seq - self.delivered_seq, 0)


def claim(uow: UnitOfWork, target: str, owner: str, lease: timedelta) -> int | None:
    """Take (or renew) the lease on `target`; its delivered seq, or None when another owner
    holds an unexpired lease."""
    session, now = uow.session, uow.now
    session.execute(
        insert_for(session, AuditForwardRow)
        .values(target=target, delivered_seq=0)
        .on_conflict_do_nothing(index_elements=["target"])
    )
    taken = session.execute(
        update(AuditForwardRow)
        .where(
            AuditForwardRow.target == target,
            or_(
                AuditForwardRow.claimed_until.is_(None),
                AuditForwardRow.claimed_until < now,
                AuditForwardRow.claimed_by == owner,
            ),
        )
        .values(claimed_by=owner, claimed_until=now + lease)
        .returning(AuditForwardRow.delivered_seq)
    ).first()
    return int(taken[0]) if taken is not None else None


def release(uow: UnitOfWork, target: str, owner: str) -> None:
    uow.session.execute(
        update(AuditForwardRow)
        .where(AuditForwardRow.target == target, AuditForwardRow.claimed_by == owner)
        .values(claimed_by=None, claimed_until=None)
    )


def after(session: Session, seq: int, limit: int) -> list[dict[str, Any]]:
    """Up to `limit` records after `seq`, in seq order."""
    rows = session.scalars(
        select(AuditRow).where(AuditRow.seq > seq).order_by(AuditRow.seq).limit(limit)
    ).all()
    return [as_dict(row) for row in rows]


def advance(uow: UnitOfWork, target: str, seq: int, hash_: str) -> None:
    """Records up to `seq` (whose hash is `hash_`) were delivered; never moves back."""
    uow.session.execute(
        update(AuditForwardRow)
        .where(AuditForwardRow.target == target, AuditForwardRow.delivered_seq < seq)
        .values(
            delivered_seq=seq,
            delivered_hash=hash_,
            delivered_at=uow.now,
            failing_since=None,
            last_error=None,
        )
    )


def delivered_hash(session: Session, target: str) -> str | None:
    row = session.get(AuditForwardRow, target)
    return row.delivered_hash if row is not None else None


def rewind(uow: UnitOfWork, target: str, seq: int) -> None:
    """An admin's decision: deliver again from record `seq + 1` (the cursor moves back)."""
    record = session_hash(uow.session, seq)
    uow.session.execute(
        insert_for(uow.session, AuditForwardRow)
        .values(target=target, delivered_seq=0)
        .on_conflict_do_nothing(index_elements=["target"])
    )
    uow.session.execute(
        update(AuditForwardRow)
        .where(AuditForwardRow.target == target)
        .values(delivered_seq=seq, delivered_hash=record, failing_since=None, last_error=None)
    )


def session_hash(session: Session, seq: int) -> str | None:
    """The hash of record `seq` as the log holds it now (None: no such record)."""
    return session.scalar(select(AuditRow.hash).where(AuditRow.seq == seq))


def failed(uow: UnitOfWork, target: str, error: str) -> None:
    """A delivery failed: keep when the failures began, and the latest reason."""
    row = uow.session.get(AuditForwardRow, target)
    if row is not None:
        row.last_error = error
        row.failing_since = row.failing_since or uow.now


def backlog(session: Session, target: str) -> Backlog:
    head = session.scalar(select(func.max(AuditRow.seq))) or 0
    row = session.get(AuditForwardRow, target)
    if row is None:
        return Backlog(target, 0, head, None, None, None)
    return Backlog(
        target, row.delivered_seq, head, row.delivered_at, row.failing_since, row.last_error
    )
