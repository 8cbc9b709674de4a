"""The Pending Licenses queue: list it, act on a waiting user, and expire old pending data.

A pending user is a user record with ``status = "pending"`` (and not merged away). Their agents
and activity rows are stored like anyone else's but do not count as used licenses.

Every admin action is one transaction that starts by taking the audit lock (so two approvals,
or an approval and an ingest, cannot both take the last free license), changes the store, checks
the license limit on the result, and appends its audit record. A dry run does the same work and
then rolls the transaction back, so what it reports is exactly what the real action would do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from entrasync.config import Config
from entrasync.domain.audit import SYSTEM_ACTOR, AuditEvent, format_at
from entrasync.errors import ActionRefused, NotFound
from entrasync.services import operations
from entrasync.store import audit, queries
from entrasync.store.account import account_row, terms_of
from entrasync.store.db import Store
from entrasync.store.schema import ActivityRow, AgentRow, IdentifierRow, UserRow

# --- listing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PendingEntry:
    """One user waiting in the queue, with what they hold."""

    id: int
    identifiers: list[dict[str, str]]
    tracking: str
    pending_since: datetime | None
    waiting_s: int
    agents: int
    agents_with_history: int  # licenses approving them would take
    activity_rows: int
    oldest_activity: datetime | None
    newest_activity: datetime | None

    def as_dict(self) -> dict[str, Any]:
        view = asdict(self)
        for key in ("pending_since", "oldest_activity", "newest_activity"):
            value = view[key]
            view[key] = value.isoformat() if value is not None else None
        view["waiting"] = format_wait(self.waiting_s)
        view["licenses_needed"] = self.licenses_needed
        return view

    @property
    def licenses_needed(self) -> int:
        """What approving takes: one per agent with history, and at least one."""
        return max(1, self.agents_with_history)


def _pending_ids() -> Any:
    return select(UserRow.id).where(UserRow.status == "pending", UserRow.merged_into_id.is_(None))


def list_pending(store: Store, now: datetime) -> list[PendingEntry]:
    """The queue, longest waiting first: four set-based queries whatever its length."""
    with store.reading() as session:
        users = list(
            session.scalars(
                select(UserRow)
                .where(UserRow.id.in_(_pending_ids()))
                .order_by(UserRow.pending_since, UserRow.id)
            )
        )
        idents: dict[int, list[dict[str, str]]] = {}
        for uid, kind, value in session.execute(
            select(IdentifierRow.user_id, IdentifierRow.kind, IdentifierRow.value)
            .where(IdentifierRow.user_id.in_(_pending_ids()))
            .order_by(IdentifierRow.kind, IdentifierRow.value)
        ):
            idents.setdefault(int(uid), []).append({"kind": kind, "value": value})
        agents = {
            int(uid): int(n)
            for uid, n in session.execute(
                select(AgentRow.user_id, func.count(AgentRow.id))
                .where(AgentRow.user_id.in_(_pending_ids()))
                .group_by(AgentRow.user_id)
            )
        }
        history: dict[int, tuple[int, int, datetime | None, datetime | None]] = {}
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
    entries = []
    for user in users:
        holding, rows, oldest, newest = history.get(user.id, (0, 0, None, None))
        since = user.pending_since or user.created_at
        entries.append(
            PendingEntry(
                id=user.id,
                identifiers=idents.get(user.id, []),
                tracking=user.tracking,
                pending_since=user.pending_since,
                waiting_s=max(0, int((now - since).total_seconds())),
                agents=agents.get(user.id, 0),
                agents_with_history=holding,
                activity_rows=rows,
                oldest_activity=oldest,
                newest_activity=newest,
            )
        )
    return entries


def _aware(value: Any) -> datetime | None:
    """Aggregates bypass the column type, so SQLite hands back naive times or strings."""
    if value is None:
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def format_wait(seconds: int) -> str:
    """`3d 4h`, `5h 12m`, `7m`: how long someone has waited, for people."""
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m"


# --- admin actions -------------------------------------------------------------------------


@dataclass(frozen=True)
class PendingResult:
    action: str
    user_id: int
    applied: bool
    details: dict[str, Any]
    audit_seq: int | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# An operation changes the store for one pending user and returns (audit reason, details).
Operation = Callable[[Session, UserRow], tuple[str, dict[str, Any]]]


def _label(identifiers: list[dict[str, str]], user_id: int) -> str:
    for kind in ("upn", "email", "employee_id", "logon"):
        for ident in identifiers:
            if ident["kind"] == kind:
                return f"user {user_id} ({ident['value']})"
    return f"user {user_id}"


def _find_pending(session: Session, ident: str) -> UserRow:
    user = queries.find_user(session, ident)
    if user.status != "pending":
        raise ActionRefused(
            f"user {user.id} ({ident}) is not in the pending queue (see `entrasync pending list`)"
        )
    return user


def _history_agents(session: Session, user_id: int) -> int:
    return int(
        session.scalar(
            select(func.count(AgentRow.id)).where(
                AgentRow.user_id == user_id, queries.has_history()
            )
        )
        or 0
    )


def _pending_action(
    store: Store,
    config: Config,
    ident: str,
    action: str,
    operation: Operation,
    *,
    actor: str,
    now: datetime,
    dry_run: bool,
) -> PendingResult:
    with store.unit_of_work(now, actor=actor, account=config.account, notify=config.notify) as uow:
        session = uow.session
        uow.lock()
        account = uow.account(config.account)
        limit = terms_of(account).limit
        user = _find_pending(session, ident)
        identifiers = queries.identifiers_of(session, user.id)
        entra_object_id = user.entra_object_id
        used_before = queries.used_licenses(session)
        waited = int((now - (user.pending_since or user.created_at)).total_seconds())
        reason, details = operation(session, user)
        session.flush()
        used_after = queries.used_licenses(session)
        if used_after > limit and used_after > used_before:
            raise ActionRefused(
                f"{action} {_label(identifiers, user.id)} would use {used_after} licenses, "
                f"{limit} are purchased: free a license first (entrasync users purge or "
                "users merge) or raise account.purchased_licenses"
            )
        details = {
            **details,
            "waited_s": max(0, waited),
            "licenses_used_before": used_before,
            "licenses_used_after": used_after,
            "licenses_purchased": limit,
        }
        if dry_run:
            uow.discard()
            return PendingResult(action, user.id, False, details, None)
        event = AuditEvent(action, reason, user.id, entra_object_id, identifiers, details)
        seqs = uow.audit(event)
        return PendingResult(action, user.id, True, details, seqs[0])


def approve(
    store: Store, config: Config, ident: str, *, actor: str, now: datetime, dry_run: bool = False
) -> PendingResult:
    """Give a pending user licenses: refused (ActionRefused) unless enough are free.

    A user whose data has all expired still needs one free license: they take it with their
    next report."""

    def operation(session: Session, user: UserRow) -> tuple[str, dict[str, Any]]:
        limit = terms_of(account_row(session)).limit
        used = queries.used_licenses(session)
        holding = _history_agents(session, user.id)
        needed = max(1, holding)  # as PendingEntry.licenses_needed
        if used + needed > limit:
            free = max(0, limit - used)
            name = _label(queries.identifiers_of(session, user.id), user.id)
            raise ActionRefused(
                f"cannot approve {name}: no license is free ({used} of {limit} purchased "
                f"licenses are used, {free} free, this user needs {needed}). Free one "
                "(entrasync users purge IDENT, users merge SOURCE TARGET), assign or merge the "
                "user instead (entrasync pending assign|merge), or raise "
                "account.purchased_licenses; then approve again"
            )
        user.status = "active"
        user.pending_since = None
        return "approved by an administrator", {"licenses_granted": holding}

    return _pending_action(
        store, config, ident, "pending.approved", operation, actor=actor, now=now, dry_run=dry_run
    )


def assign(
    store: Store,
    config: Config,
    ident: str,
    to: str,
    *,
    actor: str,
    now: datetime,
    dry_run: bool = False,
) -> PendingResult:
    """The pending user is the same person as an existing user: their identifiers, agents and
    data join that user (agents merged per ``merge.agent_merge``)."""

    def operation(session: Session, user: UserRow) -> tuple[str, dict[str, Any]]:
        target = queries.find_user(session, to)
        if target.id == user.id:
            raise ActionRefused(f"user {user.id} cannot be assigned to itself")
        if target.status == "pending":
            raise ActionRefused(
                f"user {target.id} ({to}) is pending too: assign to a licensed user, "
                "or approve one of them first"
            )
        details = operations.merge_users(
            session, user, target, config.merge.agent_merge, apply=True
        )
        return f"assigned to existing user {target.id} ({to}) by an administrator", details

    return _pending_action(
        store, config, ident, "pending.assigned", operation, actor=actor, now=now, dry_run=dry_run
    )


def merge(
    store: Store,
    config: Config,
    ident: str,
    into_agent: int,
    *,
    actor: str,
    now: datetime,
    dry_run: bool = False,
) -> PendingResult:
    """The pending user's history joins an existing agent (no new license): every agent of the
    pending user folds into that agent, and the pending record merges into its owner."""

    def operation(session: Session, user: UserRow) -> tuple[str, dict[str, Any]]:
        into = session.get(AgentRow, into_agent)
        if into is None:
            raise NotFound(f"no agent with id {into_agent} (see `entrasync users show USER`)")
        if into.user_id == user.id:
            raise ActionRefused(
                f"agent {into_agent} belongs to the pending user {user.id} itself: "
                "choose an agent of a licensed user"
            )
        target = queries.find_user(session, f"id:{into.user_id}")
        if target.status == "pending":
            raise ActionRefused(
                f"agent {into_agent} belongs to user {target.id}, who is pending too: "
                "choose an agent of a licensed user"
            )
        agents = list(
            session.scalars(
                select(AgentRow).where(AgentRow.user_id == user.id).order_by(AgentRow.id)
            )
        )
        folded = [operations.merge_agent_into(session, a, into, apply=True) for a in agents]
        users = operations.merge_users(session, user, target, "none", apply=True)
        details: dict[str, Any] = {
            "into_agent_id": into_agent,
            "target_user_id": target.id,
            "agents_folded": [f["agent_id"] for f in folded],
            "rows_moved": sum(int(f["rows_moved"]) for f in folded),
            "identifiers_moved": users["identifiers_moved"],
        }
        return f"merged into agent {into_agent} of user {target.id} by an administrator", details

    return _pending_action(
        store, config, ident, "pending.merged", operation, actor=actor, now=now, dry_run=dry_run
    )


def remove(
    store: Store, config: Config, ident: str, *, actor: str, now: datetime, dry_run: bool = False
) -> PendingResult:
    """Purge the pending user's data and keep their identifiers Untracked (by an admin, so no
    sync re-tracks them): their later reports are dropped. They leave the queue."""

    def operation(session: Session, user: UserRow) -> tuple[str, dict[str, Any]]:
        details = operations.purge_user(session, user, "admin", apply=True)
        user.untracked_by = "admin"
        user.status = "active"
        user.pending_since = None
        return "removed from the pending queue by an administrator", details

    return _pending_action(
        store, config, ident, "pending.removed", operation, actor=actor, now=now, dry_run=dry_run
    )


# --- retention -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpireResult:
    cutoff: datetime
    rows_deleted: int
    users: dict[int, int] = field(default_factory=dict)  # user id -> rows deleted
    applied: bool = True
    audit_seqs: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "cutoff": self.cutoff.isoformat(),
            "rows_deleted": self.rows_deleted,
            "users": {str(uid): n for uid, n in sorted(self.users.items())},
            "applied": self.applied,
            "audit_seqs": self.audit_seqs,
        }


def expire_pending_data(
    store: Store,
    now: datetime,
    retention: timedelta,
    *,
    dry_run: bool = False,
    actor: str = SYSTEM_ACTOR,
    run_id: str | None = None,
) -> ExpireResult:
    """Delete pending users' activity rows whose event started before ``now - retention``.

    Rolling retention by the event's own time. One DELETE statement whatever the volume, in one
    transaction with one ``pending.expired`` audit record per affected user. Licensed users'
    rows are never touched. The audit lock is taken first, so no ingest or approval can commit
    between the per-user count and the delete (the counts are exact). Nothing to expire writes
    nothing (no audit noise every cycle)."""
    cutoff = now - retention
    pending_agents = select(AgentRow.id).where(AgentRow.user_id.in_(_pending_ids()))
    expired = (ActivityRow.agent_id.in_(pending_agents), ActivityRow.start < cutoff)
    with store.transaction() as session:
        if not dry_run:
            store.audit_lock(session)
        counts = {
            int(uid): int(n)
            for uid, n in session.execute(
                select(AgentRow.user_id, func.count(ActivityRow.id))
                .join(ActivityRow, ActivityRow.agent_id == AgentRow.id)
                .where(*expired)
                .group_by(AgentRow.user_id)
            )
        }
        total = sum(counts.values())
        if dry_run or total == 0:
            return ExpireResult(cutoff, total, counts, applied=not dry_run)
        result = session.execute(delete(ActivityRow).where(*expired))
        deleted = int(getattr(result, "rowcount", total))
        if deleted != total:  # cannot happen under the audit lock; never audit a wrong count
            raise RuntimeError(f"pending retention counted {total} rows but deleted {deleted}")
        events = [
            AuditEvent(
                "pending.expired",
                f"pending data older than the retention period ({_days(retention)})",
                user_id=uid,
                identifiers=queries.identifiers_of(session, uid),
                details={
                    "rows_deleted": n,
                    "cutoff": format_at(cutoff),
                    "retention_s": int(retention.total_seconds()),
                },
            )
            for uid, n in sorted(counts.items())
        ]
        seqs = audit.append(store, session, events, actor=actor, now=now, run_id=run_id)
        return ExpireResult(cutoff, deleted, counts, True, seqs)


def _days(retention: timedelta) -> str:
    if retention % timedelta(days=1) == timedelta(0):
        return f"{retention.days}d"
    return f"{int(retention.total_seconds())}s"
