"""The figures `entrasync demo` reads back from the store for its summary (never predicted
from the scenario: what the admin sees is what the store holds)."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from entrasync.domain.identity import IdentifierKind
from entrasync.domain.status import Tracking, UserStatus
from entrasync.store.schema import AuditRow, IdentifierRow, UserRow


def tracking_counts(session: Session) -> dict[str, int]:
    """Users (merged records aside) by tracking state."""
    rows = session.execute(
        select(UserRow.tracking, func.count(UserRow.id))
        .where(UserRow.merged_into_id.is_(None))
        .group_by(UserRow.tracking)
    ).all()
    return {str(tracking): int(count) for tracking, count in rows}


def audit_count(session: Session) -> int:
    return int(session.scalar(select(func.count(AuditRow.seq))) or 0)


def pending_ids(session: Session) -> set[int]:
    """Users waiting in the pending queue (merged records aside)."""
    return set(
        session.scalars(
            select(UserRow.id).where(
                UserRow.status == UserStatus.PENDING, UserRow.merged_into_id.is_(None)
            )
        )
    )


def upns_of(session: Session, user_ids: Collection[int]) -> list[str]:
    return sorted(
        session.scalars(
            select(IdentifierRow.value).where(
                IdentifierRow.user_id.in_(sorted(user_ids)),
                IdentifierRow.kind == IdentifierKind.UPN,
            )
        )
    )


def left_queue(session: Session, user_ids: Collection[int]) -> dict[int, str]:
    """Which of `user_ids` are no longer pending, and how: merged, untracked or approved."""
    out: dict[int, str] = {}
    for user in session.scalars(select(UserRow).where(UserRow.id.in_(sorted(user_ids)))):
        if user.merged_into_id is not None:
            out[user.id] = "merged"
        elif user.status != UserStatus.PENDING:
            out[user.id] = "untracked" if user.tracking == Tracking.UNTRACKED else "approved"
    return out


def merge_survivors(session: Session) -> set[str]:
    """Entra objects whose record absorbed another one (a merge survivor)."""
    survivors = select(UserRow.merged_into_id).where(UserRow.merged_into_id.is_not(None))
    return set(
        session.scalars(
            select(UserRow.entra_object_id).where(
                UserRow.id.in_(survivors), UserRow.entra_object_id.is_not(None)
            )
        )
    )
