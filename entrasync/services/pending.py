"""The Pending Licenses queue: list it, act on a waiting user, and expire old pending data.

A pending user is a user record with ``status = "pending"`` (and not merged away). Their agents
and activity rows are stored like anyone else's but do not count as used licenses.

Every admin action is one audited transaction (services/actions.py) that starts by taking the
writers' lock (so two approvals, or an approval and an ingest, cannot both take the last free
license), changes the store, checks the license limit on the result, and appends its audit
record. A dry run does the same work and then rolls the transaction back, so what it reports
is exactly what the real action would do.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from entrasync.config import Config
from entrasync.domain.audit import SYSTEM_ACTOR, AuditEvent, format_at
from entrasync.domain.status import UntrackedBy, UserStatus
from entrasync.errors import ActionRefused, NotFound
from entrasync.services.actions import ActionResult, Details, audited_action, label, merge_into
from entrasync.store import operations, purge, queries
from entrasync.store import pending as queue
from entrasync.store import users as user_rows
from entrasync.store.account import account_row, terms_of
from entrasync.store.db import Store
from entrasync.store.schema import AgentRow, UserRow
from entrasync.store.session import Session
from entrasync.store.uow import UnitOfWork

# The CLI names the result of a pending action by its old name.
PendingResult = ActionResult

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


def list_pending(store: Store, now: datetime) -> list[PendingEntry]:
    """The queue, longest waiting first."""
    with store.reading() as session:
        waiting = queue.waiting(session)
    return [_entry(w, now) for w in waiting]


def _entry(waiting: queue.Waiting, now: datetime) -> PendingEntry:
    user = waiting.user
    since = user.pending_since or user.created_at
    return PendingEntry(
        id=user.id,
        identifiers=waiting.identifiers,
        tracking=user.tracking,
        pending_since=user.pending_since,
        waiting_s=max(0, int((now - since).total_seconds())),
        agents=waiting.agents,
        agents_with_history=waiting.agents_with_history,
        activity_rows=waiting.activity_rows,
        oldest_activity=waiting.oldest_activity,
        newest_activity=waiting.newest_activity,
    )


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


def approve(
    store: Store, config: Config, ident: str, *, actor: str, now: datetime, dry_run: bool = False
) -> ActionResult:
    """Give a pending user licenses: refused (ActionRefused) unless enough are free.

    A user whose data has all expired still needs one free license: they take it with their
    next report."""

    def operation(uow: UnitOfWork, user: UserRow, _apply: bool) -> tuple[str, Details]:
        session = uow.session
        limit = terms_of(account_row(session)).limit
        used = queries.used_licenses(session)
        holding = queue.history_agents(session, user.id)
        needed = max(1, holding)  # as PendingEntry.licenses_needed
        if used + needed > limit:
            free = max(0, limit - used)
            name = label(queries.identifiers_of(session, user.id), user.id)
            raise ActionRefused(
                f"cannot approve {name}: no license is free ({used} of {limit} purchased "
                f"licenses are used, {free} free, this user needs {needed}). Free one "
                "(entrasync users purge IDENT, users merge SOURCE TARGET), assign or merge the "
                "user instead (entrasync pending assign|merge), or raise "
                "account.purchased_licenses; then approve again"
            )
        queue.leave_queue(user)
        return "approved by an administrator", {"licenses_granted": holding}

    return audited_action(
        store,
        config,
        ident,
        "pending.approved",
        operation,
        actor=actor,
        now=now,
        dry_run=dry_run,
        pending=True,
    )


def _licensed_target(target: UserRow, refusal: str) -> None:
    """Pending data may only join a licensed user's record."""
    if target.status == UserStatus.PENDING:
        raise ActionRefused(refusal)


def assign(
    store: Store,
    config: Config,
    ident: str,
    to: str,
    *,
    actor: str,
    now: datetime,
    dry_run: bool = False,
) -> ActionResult:
    """The pending user is the same person as an existing user: their identifiers, agents and
    data join that user (agents merged per ``merge.agent_merge``)."""

    def refuse(user: UserRow, target: UserRow) -> None:
        if target.id == user.id:
            raise ActionRefused(f"user {user.id} cannot be assigned to itself")
        _licensed_target(
            target,
            f"user {target.id} ({to}) is pending too: assign to a licensed user, "
            "or approve one of them first",
        )

    def reason(target: UserRow) -> str:
        return f"assigned to existing user {target.id} ({to}) by an administrator"

    operation = merge_into(config, to, reason, refuse)
    return audited_action(
        store,
        config,
        ident,
        "pending.assigned",
        operation,
        actor=actor,
        now=now,
        dry_run=dry_run,
        pending=True,
    )


def _merge_target(session: Session, user: UserRow, into_agent: int) -> tuple[AgentRow, UserRow]:
    """The agent a pending user's history joins, and its licensed owner."""
    into = user_rows.agent(session, into_agent)
    if into is None:
        raise NotFound(f"no agent with id {into_agent} (see `entrasync users show USER`)")
    if into.user_id == user.id:
        raise ActionRefused(
            f"agent {into_agent} belongs to the pending user {user.id} itself: "
            "choose an agent of a licensed user"
        )
    target = queries.find_user(session, f"id:{into.user_id}")
    _licensed_target(
        target,
        f"agent {into_agent} belongs to user {target.id}, who is pending too: "
        "choose an agent of a licensed user",
    )
    return into, target


def merge(
    store: Store,
    config: Config,
    ident: str,
    into_agent: int,
    *,
    actor: str,
    now: datetime,
    dry_run: bool = False,
) -> ActionResult:
    """The pending user's history joins an existing agent (no new license): every agent of the
    pending user folds into that agent, and the pending record merges into its owner."""

    def operation(uow: UnitOfWork, user: UserRow, _apply: bool) -> tuple[str, Details]:
        session = uow.session
        into, target = _merge_target(session, user, into_agent)
        folded = [
            operations.merge_agent_into(session, a, into, apply=True)
            for a in user_rows.agents_of(session, user.id)
        ]
        users = operations.merge_users(session, user, target, "none", apply=True)
        details: Details = {
            "into_agent_id": into_agent,
            "target_user_id": target.id,
            "agents_folded": [f["agent_id"] for f in folded],
            "rows_moved": sum(int(f["rows_moved"]) for f in folded),
            "identifiers_moved": users["identifiers_moved"],
        }
        return f"merged into agent {into_agent} of user {target.id} by an administrator", details

    return audited_action(
        store,
        config,
        ident,
        "pending.merged",
        operation,
        actor=actor,
        now=now,
        dry_run=dry_run,
        pending=True,
    )


def remove(
    store: Store, config: Config, ident: str, *, actor: str, now: datetime, dry_run: bool = False
) -> ActionResult:
    """Purge the pending user's data and keep their identifiers Untracked (by an admin, so no
    sync re-tracks them): their later reports are dropped. They leave the queue."""

    def operation(uow: UnitOfWork, user: UserRow, _apply: bool) -> tuple[str, Details]:
        details = purge.purge_user(uow.session, user, UntrackedBy.ADMIN, apply=True)
        user.untracked_by = UntrackedBy.ADMIN.value
        queue.leave_queue(user)
        return "removed from the pending queue by an administrator", details

    return audited_action(
        store,
        config,
        ident,
        "pending.removed",
        operation,
        actor=actor,
        now=now,
        dry_run=dry_run,
        pending=True,
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
    rows are never touched. The writers' lock is taken first, so no ingest or approval can
    commit between the per-user count and the delete (the counts are exact). Nothing to expire
    writes nothing (no audit noise every cycle)."""
    cutoff = now - retention
    with store.unit_of_work(now, actor=actor, run_id=run_id) as uow:
        if not dry_run:
            uow.lock()
        counts = queue.expired_counts(uow.session, cutoff)
        total = sum(counts.values())
        if dry_run or total == 0:
            uow.discard()
            return ExpireResult(cutoff, total, counts, applied=not dry_run)
        deleted = queue.delete_expired(uow.session, cutoff, total)
        seqs = uow.audit(*_expired_events(uow, counts, cutoff, retention))
        return ExpireResult(cutoff, deleted, counts, True, seqs)


def _expired_events(
    uow: UnitOfWork, counts: dict[int, int], cutoff: datetime, retention: timedelta
) -> list[AuditEvent]:
    return [
        AuditEvent(
            "pending.expired",
            f"pending data older than the retention period ({_days(retention)})",
            user_id=uid,
            identifiers=queries.identifiers_of(uow.session, uid),
            details={
                "rows_deleted": n,
                "cutoff": format_at(cutoff),
                "retention_s": int(retention.total_seconds()),
            },
        )
        for uid, n in sorted(counts.items())
    ]


def _days(retention: timedelta) -> str:
    if retention % timedelta(days=1) == timedelta(0):
        return f"{retention.days}d"
    return f"{int(retention.total_seconds())}s"
