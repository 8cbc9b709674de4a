"""The Pending Licenses queue in the store: who waits and what they hold, the license a
decision takes, and the rolling deletion of old pending data."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, delete, func, select
from sqlalchemy.orm import Session, object_session

from entrasync.domain.status import UserStatus
from entrasync.errors import ActionRefused
from entrasync.store import queries, tally
from entrasync.store.schema import ActivityRow, AgentRow, IdentifierRow, UserRow


def _pending_ids() -> Select[int]:
    return select(UserRow.id).where(
        UserRow.status == UserStatus.PENDING.value, UserRow.merged_into_id.is_(None)
    )


@dataclass(frozen=True)
class Waiting:
    """One pending user and what they hold."""

    user: UserRow
    identifiers: list[dict[str, str]]
    agents: int
    agents_with_history: int
    activity_rows: int
    oldest_activity: datetime | None
    newest_activity: datetime | None


def waiting(session: Session) -> list[Waiting]:
    """The queue, longest waiting first: four set-based queries whatever its length."""
    users = session.scalars(
        select(UserRow)
        .where(UserRow.id.in_(_pending_ids()))
        .order_by(UserRow.pending_since, UserRow.id)
    ).all()
    idents = queries.named_by_user(
        session.execute(
            select(IdentifierRow.user_id, IdentifierRow.kind, IdentifierRow.value).where(
                IdentifierRow.user_id.in_(_pending_ids())
            )
        )
    )
    agents = {
        int(uid): int(n)
        for uid, n in session.execute(
            select(AgentRow.user_id, func.count(AgentRow.id))
            .where(AgentRow.user_id.in_(_pending_ids()))
            .group_by(AgentRow.user_id)
        )
    }
    history = _history(session)
    return [
        Waiting(user, idents.get(user.id, []), agents.get(user.id, 0), *history.get(user.id, _NONE))
        for user in users
    ]


_History = tuple[int, int, datetime | None, datetime | None]
_NONE: _History = (0, 0, None, None)


def _history(session: Session) -> dict[int, _History]:
    """User id -> (agents holding history, activity rows, oldest and newest event)."""
    history: dict[int, _History] = {}
    for uid, n_agents, n_rows, first, last in session.execute(
        select(
            AgentRow.user_id,
            func.count(func.distinct(ActivityRow.agent_id)),
            func.count(ActivityRow.id),
            func.min(ActivityRow.start),
            func.max(ActivityRow.start),
        )
        .join(ActivityRow, ActivityRow.agent_id == AgentRow.id)
        .where(AgentRow.user_id.in_(_pending_ids()))
        .group_by(AgentRow.user_id)
    ):
        history[int(uid)] = (int(n_agents), int(n_rows), _aware(first), _aware(last))
    return history


def _aware(value: Any) -> datetime | None:
    """Aggregates bypass the column type, so SQLite hands back naive times or strings."""
    if value is None:
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def find_pending(session: Session, ident: str) -> UserRow:
    user = queries.find_user(session, ident)
    if user.status != UserStatus.PENDING:
        raise ActionRefused(
            f"user {user.id} ({ident}) is not in the pending queue (see `entrasync pending list`)"
        )
    return user


def history_agents(session: Session, user_id: int) -> int:
    """The user's agents holding history: the licenses approving them takes."""
    return int(
        session.scalar(
            select(func.count(AgentRow.id)).where(
                AgentRow.user_id == user_id, queries.has_history()
            )
        )
        or 0
    )


def leave_queue(user: UserRow) -> None:
    """The user is no longer pending (approved, or removed with their data)."""
    session = object_session(user)
    if session is not None:
        tally.before(session, [user.id])
    user.status = UserStatus.ACTIVE.value
    user.pending_since = None


def _expired(cutoff: datetime) -> tuple[ColumnElement[bool], ...]:
    pending_agents = select(AgentRow.id).where(AgentRow.user_id.in_(_pending_ids()))
    return ActivityRow.agent_id.in_(pending_agents), ActivityRow.start < cutoff


def expired_counts(session: Session, cutoff: datetime) -> dict[int, int]:
    """Pending user id -> their activity rows whose event started before `cutoff`."""
    return {
        int(uid): int(n)
        for uid, n in session.execute(
            select(AgentRow.user_id, func.count(ActivityRow.id))
            .join(ActivityRow, ActivityRow.agent_id == AgentRow.id)
            .where(*_expired(cutoff))
            .group_by(AgentRow.user_id)
        )
    }


def delete_expired(session: Session, cutoff: datetime, expected: int) -> int:
    """One DELETE whatever the volume; refuses (raises) a count other than `expected`, so a
    wrong count is never audited (the caller holds the writers' lock: cannot happen)."""
    result = session.execute(delete(ActivityRow).where(*_expired(cutoff)))
    deleted = int(getattr(result, "rowcount", expected))
    if deleted != expected:
        raise RuntimeError(f"pending retention counted {expected} rows but deleted {deleted}")
    return deleted
