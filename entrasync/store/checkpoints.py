"""Reading the audit chain's head and storing signed checkpoints of it."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from entrasync.domain.checkpoint import Checkpoint, SignedCheckpoint
from entrasync.store.checkpoint_rows import AuditCheckpointRow
from entrasync.store.schema import AuditRow
from entrasync.store.uow import UnitOfWork


def chain_head(session: Session) -> tuple[int, str] | None:
    """The last audit record's (seq, hash), or None when the log is empty."""
    row = session.execute(
        select(AuditRow.seq, AuditRow.hash).order_by(AuditRow.seq.desc()).limit(1)
    ).first()
    return (row[0], row[1]) if row else None


def save(uow: UnitOfWork, signed: SignedCheckpoint) -> None:
    point = signed.checkpoint
    uow.session.add(
        AuditCheckpointRow(seq=point.seq, hash=point.hash, at=point.at, signature=signed.signature)
    )
    uow.session.flush()


def all_signed(session: Session) -> list[SignedCheckpoint]:
    """Every stored checkpoint, oldest first."""
    rows = session.scalars(select(AuditCheckpointRow).order_by(AuditCheckpointRow.id)).all()
    return [
        SignedCheckpoint(Checkpoint(r.seq, r.hash, r.at), r.signature, f"store checkpoint {r.id}")
        for r in rows
    ]


def latest_signed(session: Session) -> SignedCheckpoint | None:
    row = session.scalars(
        select(AuditCheckpointRow).order_by(AuditCheckpointRow.id.desc()).limit(1)
    ).first()
    if row is None:
        return None
    point = Checkpoint(row.seq, row.hash, row.at)
    return SignedCheckpoint(point, row.signature, f"store checkpoint {row.id}")


def latest(session: Session) -> Checkpoint | None:
    """The newest stored checkpoint (what the daemon's "changed or an hour old" compares)."""
    row = session.scalars(
        select(AuditCheckpointRow).order_by(AuditCheckpointRow.id.desc()).limit(1)
    ).first()
    return Checkpoint(row.seq, row.hash, row.at) if row is not None else None
