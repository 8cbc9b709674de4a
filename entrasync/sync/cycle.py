"""One sync cycle: read → mirror → plan → guard → apply → record the run.

A dry run (`plan`, `sync --dry-run`) reads and plans inside one transaction that is rolled
back, so it changes nothing — not even the delta links.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, Protocol, TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from entrasync.config import Config
from entrasync.domain.actions import ACTIONS, GUARDED, ActionKind
from entrasync.domain.audit import SYSTEM_ACTOR, AuditEvent
from entrasync.domain.entra import GroupPage, UserPage, reachable_groups
from entrasync.domain.evidence import MergeMaps
from entrasync.domain.planning import Plan, PlannedAction, Policy, plan
from entrasync.domain.status import HeldStatus
from entrasync.domain.thresholds import Threshold
from entrasync.errors import EntrasyncError, NotFound
from entrasync.graph import GraphClient, child_group_id
from entrasync.graph.client import DeltaRound
from entrasync.store import audit
from entrasync.store.db import Store
from entrasync.store.outbox import enqueue
from entrasync.store.schema import HeldActionRow, RunRow, UserRow
from entrasync.sync import facts, mirror
from entrasync.sync import groups as group_state
from entrasync.sync.apply import ActionApplier
from entrasync.sync.confirm import confirm_purges
from entrasync.sync.crashpoints import crashpoint
from entrasync.sync.groups import configured_groups

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
    suspect: dict[str, str] = field(default_factory=dict)  # watched group -> why
    unconfirmed: list[tuple[PlannedAction, str]] = field(default_factory=list)
    full_read: bool = False


def _policy(config: Config, now: datetime, session: Session) -> Policy:
    names, suspect = facts.group_states(session)
    return Policy(
        now=now,
        purge_delay=config.safety.purge_delay,
        retrack_on_removal=config.safety.retrack_on_removal,
        merge_enabled=config.merge.enabled,
        agent_merge=config.merge.agent_merge,
        on_user_deleted=config.sync.on_user_deleted,
        group_names=names,
        suspect=suspect,
    )


@dataclass
class ReadResult:
    resync: bool
    suspect: dict[str, str]  # watched group id -> why its read is not trusted
    full: bool = False  # a periodic full read (sync.full_resync_every)


Scope = Callable[[], AbstractContextManager[Session]]
Page = TypeVar("Page", UserPage, GroupPage)
PageCo = TypeVar("PageCo", UserPage, GroupPage, covariant=True)


class Round(Protocol[PageCo]):
    """A delta round as `_apply_read` consumes it: pages, then the links it ended with."""

    def __iter__(self) -> Iterator[PageCo]: ...

    @property
    def delta_links(self) -> dict[str, str]: ...

    @property
    def full_streams(self) -> frozenset[str]: ...


@dataclass(frozen=True)
class _Prefetched(Generic[Page]):
    """A round read to the end before any transaction opens (a dry run applies it in one
    transaction that is rolled back)."""

    pages: list[Page]
    delta_links: dict[str, str]
    full_streams: frozenset[str]

    def __iter__(self) -> Iterator[Page]:
        return iter(self.pages)

    @classmethod
    def read(cls, delta: Round[Page]) -> _Prefetched[Page]:
        pages = list(delta)
        return cls(pages, delta.delta_links, delta.full_streams)


@dataclass(frozen=True)
class _ReadStart:
    """What the rounds need to know before the first Graph request (one snapshot)."""

    links: dict[str, str]
    streams: list[str]  # every stream with a row, with or without a link
    periodic: bool
    roots: dict[str, list[str]]
    watched: list[str]
    children: list[str]
    before: dict[str, int]  # direct members of each watched group in the mirror


def _read_start(session: Session, config: Config, now: datetime) -> _ReadStart:
    links = mirror.load_links(session)
    periodic = _full_read_due(session, config, now) and bool(links)
    roots = configured_groups(config)
    watched = sorted({g for gs in roots.values() for g in gs})
    children = sorted(reachable_groups(mirror.mirror_edges(session), watched) - set(watched))
    return _ReadStart(
        {} if periodic else links,
        mirror.stream_names(session),
        periodic,
        roots,
        watched,
        children,
        mirror.direct_counts(session, watched),
    )


def read_entra(
    store: Store, graph: GraphClient, config: Config, now: datetime, run_id: str | None = None
) -> ReadResult:
    """Users round, then groups round, into the mirror; then each watched group's read is
    judged and its members materialised. Graph is read between transactions: each page is
    applied in its own short one, so the store stays writable while Graph is slow or down."""
    with store.reading() as session:
        start = _read_start(session, config, now)
    users, groups = _rounds(graph, config, start)
    return _apply_read(store, store.transaction, start, users, groups, config, now, run_id)


def _rounds(
    graph: GraphClient, config: Config, start: _ReadStart
) -> tuple[DeltaRound[UserPage], DeltaRound[GroupPage]]:
    """The two delta rounds, not yet read (iterating them sends the requests)."""
    users = graph.read_users(start.links)
    groups = graph.read_groups(
        start.watched, start.links, nested=config.groups.nested, children=start.children
    )
    return users, groups


def _apply_read(
    store: Store,
    scope: Scope,
    start: _ReadStart,
    users: Round[UserPage],
    groups: Round[GroupPage],
    config: Config,
    now: datetime,
    run_id: str | None,
) -> ReadResult:
    maps = MergeMaps(config.merge.domain_map, config.merge.netbios_map)
    user_stats = mirror.RoundStats()
    for user_page in users:
        with scope() as session:
            mirror.apply_user_page(session, user_page, maps, now, user_stats)
    with scope() as session:
        mirror.finish_user_round(session, user_stats, now)
        mirror.save_links(session, users.delta_links, now, users.full_streams)
    group_stats = mirror.GroupRoundStats()
    for group_page in groups:
        with scope() as session:
            mirror.apply_group_page(session, group_page, now, group_stats)
    with scope() as session:
        suspect = _finish_groups(store, session, start, groups, group_stats, config, now, run_id)
    return ReadResult(user_stats.resync or group_stats.resync, suspect, start.periodic)


def _finish_groups(
    store: Store,
    session: Session,
    start: _ReadStart,
    groups: Round[GroupPage],
    stats: mirror.GroupRoundStats,
    config: Config,
    now: datetime,
    run_id: str | None,
) -> dict[str, str]:
    """The groups round's last transaction: its diff and links, the judgement of each
    watched group, and the materialised effective membership."""
    mirror.finish_group_round(session, stats)
    mirror.save_links(session, groups.delta_links, now, groups.full_streams)
    stale = [
        s for s in start.streams if (g := child_group_id(s)) is not None and g not in start.children
    ]
    mirror.drop_streams(session, [s for s in stale if s not in groups.delta_links])
    suspect = group_state.judge(store, session, config, stats, start.before, now, run_id)
    mirror.drop_unconfigured(session, start.watched)
    mirror.update_watched(session, start.roots, mirror.mirror_edges(session), set(suspect), now)
    return suspect


def _full_read_due(session: Session, config: Config, now: datetime) -> bool:
    last = mirror.oldest_full_round(session)
    return last is None or now - last >= config.sync.full_resync_every


def _limits(config: Config, total_users: int) -> dict[ActionKind, int]:
    thresholds: dict[ActionKind, Threshold] = {
        kind: getattr(config.safety, str(ACTIONS[kind].threshold_key)) for kind in GUARDED
    }
    return {kind: t.limit(total_users) for kind, t in thresholds.items()}


def held_kinds(config: Config, the_plan: Plan, total_users: int) -> set[ActionKind]:
    limits = _limits(config, total_users)
    return {k for k in GUARDED if len(the_plan.of_kind(k)) > limits[k]}


def _total_users(session: Session) -> int:
    return int(
        session.scalar(select(func.count(UserRow.id)).where(UserRow.merged_into_id.is_(None))) or 0
    )


def _last_completed(session: Session, now: datetime) -> datetime:
    """Start of the last cycle that completed (objects changed since are re-examined for
    identifier reuse, so a crashed cycle's changes are not lost)."""
    last = session.scalar(
        select(func.max(RunRow.started_at)).where(
            RunRow.kind == "sync", RunRow.status.in_(("ok", "held"))
        )
    )
    return min(last, now) if last is not None else datetime.min.replace(tzinfo=now.tzinfo)


def _plan(session: Session, config: Config, now: datetime) -> tuple[Plan, int]:
    gathered = facts.gather(
        session,
        changed_since=_last_completed(session, now),
        on_user_deleted=config.sync.on_user_deleted,
    )
    return plan(gathered, _policy(config, now, session)), _total_users(session)


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
        message="; ".join(result.suspect.values()) or None,
        suspect=result.suspect,
    )
    return result


def _dry_run(
    store: Store, config: Config, graph: GraphClient, now: datetime, run_id: str
) -> CycleResult:
    """Graph is read to the end first (no transaction open meanwhile); then the read is
    applied, planned and rolled back in one transaction."""
    with store.reading() as session:
        start = _read_start(session, config, now)
    users, groups = _rounds(graph, config, start)
    user_pages, group_pages = _Prefetched.read(users), _Prefetched.read(groups)
    with store.transaction() as session:
        read = _apply_read(
            store, lambda: nullcontext(session), start, user_pages, group_pages, config, now, None
        )
        session.flush()
        the_plan, total = _plan(session, config, now)
        held = held_kinds(config, the_plan, total)
        session.rollback()
    result = CycleResult(
        run_id, "dry-run", the_plan, read.resync, graph.counters.total, suspect=read.suspect
    )
    result.full_read = read.full
    result.held.update({k.value: len(the_plan.of_kind(k)) for k in held})
    return result


def _cycle(
    store: Store, config: Config, graph: GraphClient, now: datetime, run_id: str
) -> CycleResult:
    read = read_entra(store, graph, config, now, run_id)
    crashpoint("mirror-read")
    with store.reading() as session:
        the_plan, total = _plan(session, config, now)
    held = held_kinds(config, the_plan, total)
    status = "held" if held or read.suspect else "ok"
    result = CycleResult(run_id, status, the_plan, read.resync, suspect=read.suspect)
    result.full_read = read.full
    applier = ActionApplier(store, config, run_id, now)
    links = the_plan.of_kind(ActionKind.LINK)
    if links:
        result.applied[ActionKind.LINK.value] += applier.apply_links(links)
    _apply_all(
        applier,
        graph,
        [a for a in the_plan.actions if a.kind not in held and a.kind != ActionKind.LINK],
        result,
    )
    if held:
        _hold(store, config, run_id, now, [a for a in the_plan.actions if a.kind in held], total)
        result.held.update({k.value: len(the_plan.of_kind(k)) for k in held})
    with store.unit_of_work(now, run_id=run_id, account=config.account, notify=config.notify):
        pass  # the settings + compliance tail, once, after every action of the run
    return result


def _apply_all(
    applier: ActionApplier, graph: GraphClient, actions: list[PlannedAction], result: CycleResult
) -> None:
    """Each action in its own transaction, in plan order; purges last, in batches (a purge
    never depends on a later action, and merges must have moved agents before they go),
    and only those Graph confirms right now."""
    done = [a for a in actions if a.kind != ActionKind.PURGE and applier.apply(a).done]
    purges = [a for a in actions if a.kind == ActionKind.PURGE]
    if purges:
        checked = confirm_purges(
            graph, purges, _trusted_delete_groups(applier.config, result), applier.group_names()
        )
        crashpoint("confirmed")
        applier.record_unconfirmed(checked.unconfirmed)
        result.unconfirmed = checked.unconfirmed
        done += applier.apply_purges(checked.confirmed)
    for action in done:
        result.applied[action.kind.value] += 1
        _log_applied(result.run_id, action)


def _trusted_delete_groups(config: Config, result: CycleResult) -> list[str]:
    return [g for g in configured_groups(config)["delete"] if g not in result.suspect]


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
    """Re-plan against current state; apply the held actions of `run_id` that are still valid
    (purges confirmed with Graph first, like in a cycle)."""
    with store.reading() as session:
        held_rows = session.scalars(
            select(HeldActionRow).where(
                HeldActionRow.run_id == run_id, HeldActionRow.status == "held"
            )
        ).all()
        targets = {row.summary for row in held_rows}
    if not held_rows:
        raise NotFound(f"run {run_id} has no held actions waiting for approval")
    new_run = str(uuid.uuid4())
    with graph_factory() as graph:
        read = read_entra(store, graph, config, now, new_run)
        with store.reading() as session:
            the_plan, _ = _plan(session, config, now)
        _start_run(store, new_run, "approve", now)
        result = CycleResult(new_run, "ok", the_plan, read.resync, suspect=read.suspect)
        applier = ActionApplier(store, config, new_run, now, actor)
        _apply_all(applier, graph, [a for a in the_plan.actions if a.target in targets], result)
        result.graph_requests = graph.counters.total
    still_valid = {a.target for a in the_plan.actions}
    _release(store, config, run_id, new_run, targets, still_valid, actor, now)
    _finish_run(
        store,
        new_run,
        "ok",
        now,
        graph_requests=result.graph_requests,
        counts=dict(result.applied),
        resync=read.resync,
        suspect=read.suspect,
    )
    return result


def _release(
    store: Store,
    config: Config,
    run_id: str,
    new_run: str,
    targets: set[str],
    still_valid: set[str],
    actor: str,
    now: datetime,
) -> None:
    with store.unit_of_work(
        now, actor=actor, run_id=new_run, account=config.account, notify=config.notify
    ) as uow:
        released = 0
        for row in uow.session.scalars(
            select(HeldActionRow).where(
                HeldActionRow.run_id == run_id, HeldActionRow.status == HeldStatus.HELD
            )
        ):
            valid = row.summary in still_valid
            row.status = HeldStatus.RELEASED if valid else HeldStatus.OBSOLETE
            row.resolved_at = now
            released += valid
        uow.audit(
            AuditEvent(
                "action.released",
                f"held actions of run {run_id} approved",
                details={"run": run_id, "released": released, "obsolete": len(targets) - released},
            )
        )


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
    suspect: dict[str, str] | None = None,
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
        run.suspect = suspect or None
