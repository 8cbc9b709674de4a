"""Queue an email for the admins in the caller's transaction (sent later by the notifier)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

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
