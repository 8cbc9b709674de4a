"""The outbox: queue an email for the admins in the caller's transaction, and the rows the
notifier (notify/smtp.py) claims, marks sent, retries or releases."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from entrasync.store.schema import OutboxRow


def enqueue(
    session: Session,
    *,
    topic: str,
    subject: str,
    body: str,
    recipients: Sequence[str],
    now: datetime,
) -> OutboxRow | None:
    """Nothing is queued when no admin is configured: there is nobody to tell."""
    if not recipients:
        return None
    row = OutboxRow(
        created_at=now,
        topic=topic,
        subject=subject,
        body=body,
        recipients=list(recipients),
        attempts=0,
        next_attempt_at=now,
    )
    session.add(row)
    return row


@dataclass(frozen=True)
class Email:
    """A claimed outbox row, detached from its session."""

    id: int
    created_at: datetime
    subject: str
    body: str
    recipients: list[str]
    attempts: int


_UNSYNCED = {"synchronize_session": False}


def claim(session: Session, now: datetime, lease_until: datetime, batch: int) -> list[Email]:
    """The due rows, leased until `lease_until` by a compare-and-set UPDATE … RETURNING, so
    two flushers never hold the same row."""
    due = list(
        session.scalars(
            select(OutboxRow.id)
            .where(OutboxRow.sent_at.is_(None), OutboxRow.next_attempt_at <= now)
            .order_by(OutboxRow.next_attempt_at, OutboxRow.id)
            .limit(batch)
        )
    )
    if not due:
        return []
    claimed = set(
        session.scalars(
            update(OutboxRow)
            .where(
                OutboxRow.id.in_(due),
                OutboxRow.sent_at.is_(None),
                OutboxRow.next_attempt_at <= now,
            )
            .values(next_attempt_at=lease_until)
            .returning(OutboxRow.id),
            execution_options=_UNSYNCED,
        )
    )
    rows = session.scalars(
        select(OutboxRow).where(OutboxRow.id.in_(claimed)).order_by(OutboxRow.id)
    )
    return [
        Email(r.id, r.created_at, r.subject, r.body, list(r.recipients), r.attempts) for r in rows
    ]


def mark_sent(session: Session, outbox_id: int, now: datetime, note: str | None) -> None:
    session.execute(
        update(OutboxRow)
        .where(OutboxRow.id == outbox_id)
        .values(sent_at=now, attempts=OutboxRow.attempts + 1, last_error=note),
        execution_options=_UNSYNCED,
    )


def record_failure(session: Session, email: Email, reason: str, next_attempt_at: datetime) -> None:
    """One more failed attempt; a row sent meanwhile (by another flusher) is left alone."""
    session.execute(
        update(OutboxRow)
        .where(OutboxRow.id == email.id, OutboxRow.sent_at.is_(None))
        .values(attempts=email.attempts + 1, last_error=reason, next_attempt_at=next_attempt_at),
        execution_options=_UNSYNCED,
    )


def release(session: Session, outbox_ids: Sequence[int], now: datetime) -> None:
    """Claimed rows not tried: due again at once."""
    session.execute(
        update(OutboxRow)
        .where(OutboxRow.id.in_(outbox_ids), OutboxRow.sent_at.is_(None))
        .values(next_attempt_at=now),
        execution_options=_UNSYNCED,
    )
