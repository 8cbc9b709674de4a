"""`entrasync users …`: show, list, and the audited admin actions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from entrasync.config import Config
from entrasync.domain.audit import AuditEvent
from entrasync.services import operations
from entrasync.store import queries
from entrasync.store.db import Store
from entrasync.store.schema import ActivityRow, AgentLogonRow, AgentRow, IdentifierRow, UserRow


def user_view(session: Session, user: UserRow) -> dict[str, Any]:
    """The `users show --json` shape (DESIGN.md), plus a few extra keys."""
    agents = queries.agent_summaries(session, user.id)
    licenses = (
        sum(1 for agent in agents if agent.activity_rows > 0) if user.status == "active" else 0
    )
    return {
        "id": user.id,
        "tracking": user.tracking,
        "status": user.status,
        "entra_object_id": user.entra_object_id,
        "identifiers": queries.identifiers_of(session, user.id),
        "agents": [
            {"id": a.id, "logons": a.logons, "activity_rows": a.activity_rows} for a in agents
        ],
        "licenses": licenses,
        "untracked_by": user.untracked_by,
        "pending_since": _iso(user.pending_since),
        "last_activity_at": _iso(user.last_activity_at),
        "purged_at": _iso(user.purged_at),
        "retired_identifiers": queries.retired_identifiers_of(session, user.id),
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def show_user(store: Store, ident: str) -> dict[str, Any]:
    with store.reading() as session:
        return user_view(session, queries.find_user(session, ident))


def list_users(
    store: Store, *, tracking: str | None = None, status: str | None = None
) -> list[dict[str, Any]]:
    """All surviving user records in the `users show` shape (plus `activity_rows`, the
    user's total), set-based: a handful of queries whatever the number of users."""
    with store.reading() as session:
        query = select(UserRow).where(UserRow.merged_into_id.is_(None)).order_by(UserRow.id)
        if tracking:
            query = query.where(UserRow.tracking == tracking)
        if status:
            query = query.where(UserRow.status == status)
        users = list(session.scalars(query))
        idents: dict[int, list[dict[str, str]]] = {}
        for uid, kind, value in session.execute(
            select(IdentifierRow.user_id, IdentifierRow.kind, IdentifierRow.value).order_by(
                IdentifierRow.kind, IdentifierRow.value
            )
        ):
            idents.setdefault(int(uid), []).append({"kind": kind, "value": value})
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
        retired = queries.retired_identifiers_by_user(session)
        result = []
        for u in users:
            mine = agents.get(u.id, [])
            licenses = sum(1 for a in mine if a["activity_rows"] > 0) if u.status == "active" else 0
            result.append(
                {
                    "id": u.id,
                    "tracking": u.tracking,
                    "status": u.status,
                    "entra_object_id": u.entra_object_id,
                    "identifiers": idents.get(u.id, []),
                    "agents": mine,
                    "licenses": licenses,
                    "activity_rows": sum(a["activity_rows"] for a in mine),
                    "untracked_by": u.untracked_by,
                    "pending_since": _iso(u.pending_since),
                    "last_activity_at": _iso(u.last_activity_at),
                    "purged_at": _iso(u.purged_at),
                    "retired_identifiers": retired.get(u.id, []),
                }
            )
        return result


@dataclass(frozen=True)
class ActionResult:
    action: str
    user_id: int
    applied: bool
    details: dict[str, Any]
    audit_seq: int | None


Operation = Callable[[Session, UserRow, bool], dict[str, Any]]


def _admin_action(
    store: Store,
    config: Config,
    ident: str,
    action: str,
    reason: str,
    operation: Operation,
    *,
    actor: str,
    now: datetime,
    dry_run: bool,
) -> ActionResult:
    with store.unit_of_work(now, actor=actor, account=config.account, notify=config.notify) as uow:
        session = uow.session
        # Serialise with every other writer (PostgreSQL) before reading the user, so that
        # the details audited are the state the change was made on.
        uow.lock()
        user = queries.find_user(session, ident)
        identifiers = queries.identifiers_of(session, user.id)
        details = operation(session, user, not dry_run)
        if dry_run:
            uow.discard()
            return ActionResult(action, user.id, False, details, None)
        session.flush()
        event = AuditEvent(action, reason, user.id, user.entra_object_id, identifiers, details)
        seqs = uow.audit(event)
        return ActionResult(action, user.id, True, details, seqs[0])


def untrack(
    store: Store, config: Config, ident: str, *, actor: str, now: datetime, dry_run: bool
) -> ActionResult:
    return _admin_action(
        store,
        config,
        ident,
        "user.untracked",
        "untracked by an administrator",
        lambda s, u, apply: operations.set_tracking(s, u, "untracked", "admin", apply=apply),
        actor=actor,
        now=now,
        dry_run=dry_run,
    )


def track(
    store: Store, config: Config, ident: str, *, actor: str, now: datetime, dry_run: bool
) -> ActionResult:
    return _admin_action(
        store,
        config,
        ident,
        "user.tracked",
        "tracked again by an administrator",
        lambda s, u, apply: operations.set_tracking(s, u, "tracked", "admin", apply=apply),
        actor=actor,
        now=now,
        dry_run=dry_run,
    )


def purge(
    store: Store, config: Config, ident: str, *, actor: str, now: datetime, dry_run: bool
) -> ActionResult:
    return _admin_action(
        store,
        config,
        ident,
        "user.purged",
        "purged by an administrator",
        lambda s, u, apply: operations.purge_user(s, u, "admin", apply=apply),
        actor=actor,
        now=now,
        dry_run=dry_run,
    )


def merge(
    store: Store,
    config: Config,
    source_ident: str,
    target_ident: str,
    *,
    actor: str,
    now: datetime,
    dry_run: bool,
) -> ActionResult:
    def operation(session: Session, source: UserRow, apply: bool) -> dict[str, Any]:
        target = queries.find_user(session, target_ident)
        return operations.merge_users(
            session, source, target, config.merge.agent_merge, apply=apply
        )

    return _admin_action(
        store,
        config,
        source_ident,
        "user.merged",
        f"merged into {target_ident!r} by an administrator",
        operation,
        actor=actor,
        now=now,
        dry_run=dry_run,
    )
