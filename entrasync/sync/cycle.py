"""One sync cycle: read → mirror → plan → guard → apply → record the run.

A dry run (`plan`, `sync --dry-run`) reads and plans inside one transaction that is rolled
back, so it changes nothing — not even the delta links.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from entrasync.config import Config
from entrasync.domain.audit import SYSTEM_ACTOR, AuditEvent
from entrasync.domain.entra import reachable_groups
from entrasync.domain.evidence import MergeMaps
from entrasync.domain.planning import GUARDED, ActionKind, Plan, PlannedAction, Policy, plan
from entrasync.domain.thresholds import Threshold
from entrasync.errors import EntrasyncError
from entrasync.graph import GraphClient, child_group_id
from entrasync.services.account import apply_settings, refresh_compliance
from entrasync.services.outbox import enqueue
from entrasync.store import audit
from entrasync.store.db import Store
from entrasync.store.schema import HeldActionRow, RunRow, UserRow
from entrasync.sync import facts, mirror
from entrasync.sync.apply import ActionApplier
from entrasync.sync.crashpoints import crashpoint

GraphFactory = Callable[[], GraphClient]
log = logging.getLogger("entrasync.sync")


@dataclass
class CycleResult:
    run_id: str
    status: str  # ok | held | dry-run | failed
    plan: Plan
    resync: bool = False
    graph_requests: int = 0
    applied: Counter[str] = field(default_factory=Counter)
    held: Counter[str] = field(default_factory=Counter)
    frozen: dict[str, str] = field(default_factory=dict)


def _policy(config: Config, now: datetime) -> Policy:
    return Policy(
        now=now,
        purge_delay=config.safety.purge_delay,
        retrack_on_removal=config.safety.retrack_on_removal,
        merge_enabled=config.merge.enabled,
        agent_merge=config.merge.agent_merge,
        on_user_deleted=config.sync.on_user_deleted,
    )


@dataclass
class ReadResult:
    resync: bool
    frozen: dict[str, str]
    changed: bool


def read_entra(session: Session, graph: GraphClient, config: Config, now: datetime) -> ReadResult:
    """Users round, then groups round, into the mirror with their links (caller commits)."""
    links = mirror.load_links(session)
    maps = MergeMaps(config.merge.domain_map, config.merge.netbios_map)
    users = graph.read_users(links)
    user_stats = mirror.apply_user_pages(session, users, maps, now)
    mirror.save_links(session, users.delta_links, now)
    roots = {"dnt": list(config.groups.dnt), "delete": list(config.groups.delete)}
    watched = sorted({g.lower() for gs in roots.values() for g in gs})
    edges_before = mirror.mirror_edges(session)
    children = sorted(reachable_groups(edges_before, watched) - set(watched))
    groups = graph.read_groups(watched, links, nested=config.groups.nested, children=children)
    group_stats = mirror.apply_group_pages(session, groups, now)
    mirror.save_links(session, groups.delta_links, now)
    stale = [s for s in links if (g := child_group_id(s)) is not None and g not in children]
    mirror.drop_streams(session, [s for s in stale if s not in groups.delta_links])
    changed = bool(
        user_stats.users_changed or user_stats.users_removed or group_stats.membership_changes
    )
    frozen: dict[str, str] = {}
    if changed or group_stats.full or group_stats.deleted_groups:
        update = mirror.update_watched(
            session,
            {k: [g.lower() for g in v] for k, v in roots.items()},
            mirror.mirror_edges(session),
            group_stats.deleted_groups,
            now,
        )
        frozen = update.frozen
    return ReadResult(user_stats.resync or group_stats.resync, frozen, changed)


def _limits(config: Config, total_users: int) -> dict[ActionKind, int]:
    thresholds: dict[ActionKind, Threshold] = {
        ActionKind.PURGE: config.safety.max_purges,
        ActionKind.UNTRACK: config.safety.max_untracks,
        ActionKind.RETRACK: config.safety.max_retracks,
        ActionKind.MERGE: config.safety.max_merges,
    }
    return {kind: t.limit(total_users) for kind, t in thresholds.items()}


def held_kinds(config: Config, the_plan: Plan, total_users: int) -> set[ActionKind]:
    limits = _limits(config, total_users)
    return {k for k in GUARDED if len(the_plan.of_kind(k)) > limits[k]}


def _total_users(session: Session) -> int:
    from sqlalchemy import func

    return int(
        session.scalar(select(func.count(UserRow.id)).where(UserRow.merged_into_id.is_(None))) or 0
    )


def run_cycle(
    store: Store,
    config: Config,
    graph_factory: GraphFactory,
    now: datetime,
    *,
    dry_run: bool = False,
) -> CycleResult:
    run_id = str(uuid.uuid4())
    with graph_factory() as graph:
        if dry_run or config.safety.dry_run:
            return _dry_run(store, config, graph, now, run_id)
        _start_run(store, run_id, "sync", now)
        try:
            result = _cycle(store, config, graph, now, run_id)
        except EntrasyncError as exc:
            _finish_run(
                store, run_id, "failed", now, graph_requests=graph.counters.total, message=str(exc)
            )
            raise
        result.graph_requests = graph.counters.total
    _finish_run(
        store,
        run_id,
        result.status,
        now,
        graph_requests=result.graph_requests,
        counts=dict(result.applied),
        held=dict(result.held),
        resync=result.resync,
        message="; ".join(result.frozen.values()) or None,
    )
    return result


def _dry_run(
    store: Store, config: Config, graph: GraphClient, now: datetime, run_id: str
) -> CycleResult:
    with store.transaction() as session:
        read = read_entra(session, graph, config, now)
        the_plan = plan(
            facts.gather(session, changed_since=now, on_user_deleted=config.sync.on_user_deleted),
            _policy(config, now),
        )
        held = held_kinds(config, the_plan, _total_users(session))
        session.rollback()
    result = CycleResult(
        run_id, "dry-run", the_plan, read.resync, graph.counters.total, frozen=read.frozen
    )
    result.held.update({k.value: len(the_plan.of_kind(k)) for k in held})
    return result


def _cycle(
    store: Store, config: Config, graph: GraphClient, now: datetime, run_id: str
) -> CycleResult:
    with store.transaction() as session:
        read = read_entra(session, graph, config, now)
        crashpoint("mirror-read")
    with store.reading() as session:
        gathered = facts.gather(
            session, changed_since=now, on_user_deleted=config.sync.on_user_deleted
        )
        total = _total_users(session)
    the_plan = plan(gathered, _policy(config, now))
    held = held_kinds(config, the_plan, total)
    result = CycleResult(
        run_id, "held" if held else "ok", the_plan, read.resync, frozen=read.frozen
    )
    applier = ActionApplier(store, config, run_id, now)
    links = the_plan.of_kind(ActionKind.LINK)
    if links:
        result.applied[ActionKind.LINK.value] += applier.apply_links(links)
    _apply_all(
        applier,
        [a for a in the_plan.actions if a.kind not in held and a.kind != ActionKind.LINK],
        result,
    )
    if held:
        _hold(store, config, run_id, now, [a for a in the_plan.actions if a.kind in held], total)
        result.held.update({k.value: len(the_plan.of_kind(k)) for k in held})
    with store.transaction() as session:
        apply_settings(store, session, config.account, now)
        refresh_compliance(store, session, now, config.notify, run_id)
    return result


def _apply_all(applier: ActionApplier, actions: list[PlannedAction], result: CycleResult) -> None:
    """Each action in its own transaction, in plan order; purges last, in batches (a purge
    never depends on a later action, and merges must have moved agents before they go)."""
    done = [a for a in actions if a.kind != ActionKind.PURGE and applier.apply(a).done]
    done += applier.apply_purges([a for a in actions if a.kind == ActionKind.PURGE])
    for action in done:
        result.applied[action.kind.value] += 1
        _log_applied(result.run_id, action)


def _hold(
    store: Store,
    config: Config,
    run_id: str,
    now: datetime,
    actions: list[PlannedAction],
    total: int,
) -> None:
    """Record held actions (for `approve`), audit `action.held` per kind, tell the admins."""
    limits = _limits(config, total)
    by_kind: dict[ActionKind, list[PlannedAction]] = {}
    for action in actions:
        by_kind.setdefault(action.kind, []).append(action)
    with store.transaction() as session:
        events = []
        for kind, items in by_kind.items():
            session.add_all(
                HeldActionRow(
                    run_id=run_id,
                    kind=kind.value,
                    user_id=a.user_id,
                    entra_object_id=a.object_id,
                    summary=a.target,
                    status="held",
                    created_at=now,
                )
                for a in items
            )
            events.append(
                AuditEvent(
                    "action.held",
                    f"{len(items)} {kind.value} actions exceed safety.max_{kind.value}s "
                    f"(limit {limits[kind]} for {total} users)",
                    details={
                        "kind": kind.value,
                        "count": len(items),
                        "limit": limits[kind],
                        "licenses_freed": sum(a.licenses_freed for a in items),
                    },
                )
            )
        audit.append(store, session, events, actor=SYSTEM_ACTOR, now=now, run_id=run_id)
        summary = "\n".join(
            f"  {e.details['count']} {e.details['kind']} (limit {e.details['limit']})"
            for e in events
        )
        enqueue(
            session,
            topic="held",
            subject=f"entrasync: actions held by a safety threshold in run {run_id}",
            body=(
                f"Run {run_id} held these actions:\n{summary}\n\n"
                f"Review with `entrasync plan`, then release them with `entrasync approve {run_id}`.\n"
            ),
            recipients=config.notify.admins,
            now=now,
        )


def approve(
    store: Store,
    config: Config,
    graph_factory: GraphFactory,
    run_id: str,
    now: datetime,
    actor: str = SYSTEM_ACTOR,
) -> CycleResult:
    """Re-plan against current state; apply the held actions of `run_id` that are still valid."""
    from entrasync.errors import NotFound

    with store.reading() as session:
        held_rows = session.scalars(
            select(HeldActionRow).where(
                HeldActionRow.run_id == run_id, HeldActionRow.status == "held"
            )
        ).all()
        targets = {row.summary for row in held_rows}
    if not held_rows:
        raise NotFound(f"run {run_id} has no held actions waiting for approval")
    with graph_factory() as graph:
        with store.transaction() as session:
            read = read_entra(session, graph, config, now)
        with store.reading() as session:
            the_plan = plan(
                facts.gather(
                    session, changed_since=now, on_user_deleted=config.sync.on_user_deleted
                ),
                _policy(config, now),
            )
        requests = graph.counters.total
    new_run = str(uuid.uuid4())
    _start_run(store, new_run, "approve", now)
    result = CycleResult(new_run, "ok", the_plan, read.resync, requests, frozen=read.frozen)
    applier = ActionApplier(store, config, new_run, now, actor)
    still_valid = {a.target for a in the_plan.actions}
    _apply_all(applier, [a for a in the_plan.actions if a.target in targets], result)
    with store.transaction() as session:
        released = 0
        for row in session.scalars(
            select(HeldActionRow).where(
                HeldActionRow.run_id == run_id, HeldActionRow.status == "held"
            )
        ):
            row.status = "released" if row.summary in still_valid else "obsolete"
            row.resolved_at = now
            released += row.status == "released"
        audit.append(
            store,
            session,
            [
                AuditEvent(
                    "action.released",
                    f"held actions of run {run_id} approved",
                    details={
                        "run": run_id,
                        "released": released,
                        "obsolete": len(targets) - released,
                    },
                )
            ],
            actor=actor,
            now=now,
            run_id=new_run,
        )
        refresh_compliance(store, session, now, config.notify, new_run)
    _finish_run(
        store,
        new_run,
        "ok",
        now,
        graph_requests=requests,
        counts=dict(result.applied),
        resync=read.resync,
    )
    return result


def _log_applied(run_id: str, action: PlannedAction) -> None:
    """One log line per applied action (the daemon renders it as JSON with these fields)."""
    log.info(
        "action applied: %s user %s",
        action.kind.value,
        action.user_id,
        extra={
            "run_id": run_id,
            "action": action.kind.value,
            "user_id": action.user_id,
            "entra_object_id": action.object_id,
            "source_user_ids": list(action.source_user_ids),
            "licenses_freed": action.licenses_freed,
            "reason": action.reason,
        },
    )


def _start_run(store: Store, run_id: str, kind: str, now: datetime) -> None:
    with store.transaction() as session:
        session.add(
            RunRow(id=run_id, kind=kind, status="running", started_at=now, counts={}, held={})
        )


def _finish_run(
    store: Store,
    run_id: str,
    status: str,
    started: datetime,
    *,
    graph_requests: int = 0,
    counts: dict[str, int] | None = None,
    held: dict[str, int] | None = None,
    resync: bool = False,
    message: str | None = None,
) -> None:
    from datetime import UTC
    from datetime import datetime as dt

    with store.transaction() as session:
        run = session.get_one(RunRow, run_id)
        run.status = status
        run.finished_at = max(dt.now(UTC), started)
        run.graph_requests = graph_requests
        run.counts = counts or {}
        run.held = held or {}
        run.resync = resync
        run.message = message
