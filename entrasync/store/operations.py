"""The store-changing actions shared by admin commands, the sync cycle and the pending queue.

Each takes the caller's session (so the caller's audit record lands in the same transaction)
and returns the details to audit. With ``apply=False`` nothing is written: the details say what
would happen, for ``--dry-run`` and ``plan``. All work is set-based (one statement per table),
so merging users with a million rows is a handful of statements. Purging is `store/purge.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from sqlalchemy import (
    and_,
    delete,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session, aliased

from entrasync.domain.status import Tracking, UntrackedBy, UserStatus
from entrasync.errors import ActionRefused
from entrasync.store import tally
from entrasync.store.queries import (
    has_history,
    user_license_counts,
)
from entrasync.store.schema import (
    ActivityRow,
    AgentLogonRow,
    AgentRow,
    IdentifierRow,
    UserRow,
    event_title_key,
)

Details = dict[str, Any]


def set_tracking(
    session: Session,
    user: UserRow,
    tracking: Tracking | Literal["tracked", "untracked"],
    by: UntrackedBy | str,
    *,
    apply: bool,
) -> Details:
    """Only entrasync's own untracking (`by`) may be undone by a sync, never an admin's."""
    tracking = Tracking(tracking)
    untracked_by = str(UntrackedBy(by)) if tracking is Tracking.UNTRACKED else None
    details: Details = {
        "before": {"tracking": user.tracking, "untracked_by": user.untracked_by},
        "after": {"tracking": tracking.value, "untracked_by": untracked_by},
        "licenses": _licenses(session, user.id),
    }
    if apply:
        user.tracking = tracking.value
        user.untracked_by = untracked_by
    return details


def merge_users(
    session: Session, source: UserRow, target: UserRow, agent_merge: str, *, apply: bool
) -> Details:
    """Move the source's identifiers and agents to the target; the source record stays as a
    pointer (`merged_into_id`) so its old store id still finds the survivor."""
    _refuse_merge(source, target)
    before = _licenses(session, source.id) + _licenses(session, target.id)
    moved_ids = session.scalar(
        select(func.count(IdentifierRow.id)).where(IdentifierRow.user_id == source.id)
    )
    moved_agents = session.scalar(
        select(func.count(AgentRow.id)).where(AgentRow.user_id == source.id)
    )
    details: Details = {
        "source_user_id": source.id,
        "target_user_id": target.id,
        "identifiers_moved": int(moved_ids or 0),
        "agents_moved": int(moved_agents or 0),
        "licenses_before": before,
    }
    if not apply:
        after = _licenses_after_merge(session, source, target, agent_merge)
        return {**details, "licenses_after": after, "licenses_freed": before - after}
    tally.before(session, [source.id, target.id])
    _move_user(session, source, target)
    agents = merge_agents(session, target, apply=True) if agent_merge == "all" else {}
    after = _licenses(session, target.id)
    return {**details, **agents, "licenses_after": after, "licenses_freed": before - after}


def _refuse_merge(source: UserRow, target: UserRow) -> None:
    if source.id == target.id:
        raise ActionRefused(f"user {source.id} cannot be merged into itself")
    if (
        source.entra_object_id
        and target.entra_object_id
        and source.entra_object_id != target.entra_object_id
    ):
        raise ActionRefused(
            f"users {source.id} and {target.id} are linked to different Entra objects "
            f"({source.entra_object_id}, {target.entra_object_id}): not the same person"
        )


def _move_user(session: Session, source: UserRow, target: UserRow) -> None:
    """Hand the source's identifiers, agents and Entra link to the target."""
    session.execute(
        update(IdentifierRow).where(IdentifierRow.user_id == source.id).values(user_id=target.id)
    )
    session.execute(update(AgentRow).where(AgentRow.user_id == source.id).values(user_id=target.id))
    if source.entra_object_id and not target.entra_object_id:
        object_id, source.entra_object_id = source.entra_object_id, None
        # The link column is unique: the source must let go before the target takes it.
        session.flush()
        target.entra_object_id = object_id
    if source.last_activity_at and (
        target.last_activity_at is None or source.last_activity_at > target.last_activity_at
    ):
        target.last_activity_at = source.last_activity_at
    source.merged_into_id = target.id
    source.status = UserStatus.ACTIVE.value
    source.pending_since = None
    session.flush()


def merge_agents(session: Session, user: UserRow, *, apply: bool) -> Details:
    """Fold every agent of the user into its oldest one: one person, one license."""
    agent_ids = list(
        session.scalars(
            select(AgentRow.id).where(AgentRow.user_id == user.id).order_by(AgentRow.id)
        )
    )
    if len(agent_ids) < 2:
        return {"agents_merged": 0}
    survivor, others = agent_ids[0], agent_ids[1:]
    if apply:
        tally.before(session, [user.id])
        _move_history(session, others, survivor)
        session.execute(
            update(AgentLogonRow)
            .where(AgentLogonRow.agent_id.in_(others))
            .values(agent_id=survivor)
        )
        session.execute(delete(AgentRow).where(AgentRow.id.in_(others)))
    return {
        "agents_merged": len(others),
        "surviving_agent_id": survivor,
        "removed_agent_ids": others,
    }


def merge_agent_into(session: Session, agent: AgentRow, into: AgentRow, *, apply: bool) -> Details:
    """Move one agent's history and logons into another agent and remove it."""
    rows = session.scalar(
        select(func.count(ActivityRow.id)).where(ActivityRow.agent_id == agent.id)
    )
    if apply:
        tally.before(session, [agent.user_id, into.user_id])
        rows = int(rows or 0) - _move_history(session, [agent.id], into.id)
        session.execute(
            update(AgentLogonRow).where(AgentLogonRow.agent_id == agent.id).values(agent_id=into.id)
        )
        session.execute(delete(AgentRow).where(AgentRow.id == agent.id))
    return {"agent_id": agent.id, "into_agent_id": into.id, "rows_moved": int(rows or 0)}


def _move_history(session: Session, agent_ids: Sequence[int], into: int) -> int:
    """Move the activity rows of `agent_ids` to agent `into`; returns how many were dropped
    as copies. An event is stored once per agent (uq_activity_event), and agents that are
    merged may hold the same event (the same device reported under two logons): the copy
    `into` already holds wins, else the lowest id among the moved ones; the others are
    deleted first, so the move cannot hit the unique index."""
    keep = aliased(ActivityRow)
    dialect = session.get_bind().dialect.name
    same_event = and_(
        keep.agent_id.in_([into, *agent_ids]),
        keep.start == ActivityRow.start,
        keep.duration_s == ActivityRow.duration_s,
        keep.app == ActivityRow.app,
        keep.device == ActivityRow.device,
        event_title_key(keep.title, dialect) == event_title_key(ActivityRow.title, dialect),
        or_(keep.agent_id == into, keep.id < ActivityRow.id),
    )
    copies = delete(ActivityRow).where(
        ActivityRow.agent_id.in_(agent_ids), exists().where(same_event)
    )
    dropped = int(getattr(session.execute(copies), "rowcount", 0) or 0)
    session.execute(
        update(ActivityRow).where(ActivityRow.agent_id.in_(agent_ids)).values(agent_id=into)
    )
    return dropped


def _licenses(session: Session, user_id: int) -> int:
    return user_license_counts(session, [user_id]).get(user_id, 0)


def _licenses_after_merge(
    session: Session, source: UserRow, target: UserRow, agent_merge: str
) -> int:
    if target.status != UserStatus.ACTIVE:
        return 0
    holding = session.scalar(
        select(func.count(AgentRow.id)).where(
            AgentRow.user_id.in_([source.id, target.id]), has_history()
        )
    )
    holding = int(holding or 0)
    return min(holding, 1) if agent_merge == "all" else holding
