"""Users as the admin commands show them (`users show`, `users list`), and the agent lookups
the admin and pending actions make."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from entrasync.store import queries
from entrasync.store.schema import ActivityRow, AgentLogonRow, AgentRow, IdentifierRow, UserRow

View = dict[str, Any]


def view(session: Session, user: UserRow) -> View:
    """The `users show --json` shape (DESIGN.md), plus a few extra keys."""
    agents = [
        {"id": a.id, "logons": a.logons, "activity_rows": a.activity_rows}
        for a in queries.agent_summaries(session, user.id)
    ]
    return _view(
        user,
        identifiers=queries.identifiers_of(session, user.id),
        agents=agents,
        licenses=queries.user_license_counts(session, [user.id]).get(user.id, 0),
        retired=queries.retired_identifiers_of(session, user.id),
    )


def list_views(
    session: Session, *, tracking: str | None = None, status: str | None = None
) -> list[View]:
    """All surviving user records in the `users show` shape (plus `activity_rows`, the
    user's total), set-based: a handful of queries whatever the number of users. A filter
    that names no known `Tracking` / `UserStatus` value matches nobody."""
    query = select(UserRow).where(UserRow.merged_into_id.is_(None)).order_by(UserRow.id)
    if tracking:
        query = query.where(UserRow.tracking == tracking)
    if status:
        query = query.where(UserRow.status == status)
    users = list(session.scalars(query))
    idents = _all_identifiers(session)
    agents = _all_agents(session)
    licenses = queries.all_license_counts(session)
    retired = queries.retired_identifiers_by_user(session)
    views = []
    for user in users:
        mine = agents.get(user.id, [])
        views.append(
            _view(
                user,
                identifiers=idents.get(user.id, []),
                agents=mine,
                licenses=licenses.get(user.id, 0),
                retired=retired.get(user.id, []),
                activity_rows=sum(int(a["activity_rows"]) for a in mine),
            )
        )
    return views


def _view(
    user: UserRow,
    *,
    identifiers: list[dict[str, str]],
    agents: list[dict[str, Any]],
    licenses: int,
    retired: list[dict[str, str]],
    activity_rows: int | None = None,
) -> View:
    shown: View = {
        "id": user.id,
        "tracking": user.tracking,
        "status": user.status,
        "entra_object_id": user.entra_object_id,
        "identifiers": identifiers,
        "agents": agents,
        "licenses": licenses,
    }
    if activity_rows is not None:
        shown["activity_rows"] = activity_rows
    return shown | {
        "untracked_by": user.untracked_by,
        "pending_since": _iso(user.pending_since),
        "last_activity_at": _iso(user.last_activity_at),
        "purged_at": _iso(user.purged_at),
        "retired_identifiers": retired,
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _all_identifiers(session: Session) -> dict[int, list[dict[str, str]]]:
    return queries.named_by_user(
        session.execute(select(IdentifierRow.user_id, IdentifierRow.kind, IdentifierRow.value))
    )


def _all_agents(session: Session) -> dict[int, list[dict[str, Any]]]:
    """User id -> the user's agents (id, logons, activity rows), oldest agent first."""
    agents: dict[int, list[dict[str, Any]]] = {}
    by_id: dict[int, dict[str, Any]] = {}
    for agent_id, uid, rows in session.execute(
        select(AgentRow.id, AgentRow.user_id, func.count(ActivityRow.id))
        .outerjoin(ActivityRow, ActivityRow.agent_id == AgentRow.id)
        .group_by(AgentRow.id, AgentRow.user_id)
        .order_by(AgentRow.id)
    ):
        entry: dict[str, Any] = {"id": int(agent_id), "logons": [], "activity_rows": int(rows)}
        by_id[int(agent_id)] = entry
        agents.setdefault(int(uid), []).append(entry)
    for logon, agent_id in session.execute(
        select(AgentLogonRow.logon, AgentLogonRow.agent_id).order_by(AgentLogonRow.logon)
    ):
        if int(agent_id) in by_id:
            by_id[int(agent_id)]["logons"].append(logon)
    return agents


def agent(session: Session, agent_id: int) -> AgentRow | None:
    return session.get(AgentRow, agent_id)


def agents_of(session: Session, user_id: int) -> list[AgentRow]:
    """The user's agents, oldest first."""
    return list(
        session.scalars(select(AgentRow).where(AgentRow.user_id == user_id).order_by(AgentRow.id))
    )
