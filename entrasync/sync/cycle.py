"""One sync cycle: read → mirror → plan → guard → apply → record the run.

A dry run (`plan`, `sync --dry-run`) reads and plans on a scratch copy of the store, so it
changes nothing — not even the delta links — and works on a read-only store.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from entrasync.config import Config
from entrasync.domain.actions import ACTIONS, GUARDED, ActionKind, ApplyMode
from entrasync.domain.audit import AuditEvent
from entrasync.domain.planning import Plan, PlannedAction
from entrasync.domain.status import RunStatus
from entrasync.domain.thresholds import Threshold
from entrasync.errors import EntrasyncError
from entrasync.graph import GraphClient
from entrasync.store import changes, runs
from entrasync.store import held as held_rows
from entrasync.store.db import Store
from entrasync.store.outbox import enqueue
from entrasync.sync.apply import ActionApplier
from entrasync.sync.confirm import confirm_purges
from entrasync.sync.crashpoints import crashpoint
from entrasync.sync.groups import configured_groups
from entrasync.sync.read import Planned, queue_rules, read_and_plan

GraphFactory = Callable[[], GraphClient]
Clock = Callable[[], datetime]
log = logging.getLogger("entrasync.sync")


def wall_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class CycleResult:
    run_id: str
    status: str  # a RunStatus: ok | held | dry-run (a failed cycle raises)
    plan: Plan
    resync: bool = False
    graph_requests: int = 0
    applied: Counter[str] = field(default_factory=Counter)
    held: Counter[str] = field(default_factory=Counter)
    suspect: dict[str, str] = field(default_factory=dict)  # watched group -> why
    unconfirmed: list[tuple[PlannedAction, str]] = field(default_factory=list)
    full_read: bool = False

    @classmethod
    def of(cls, run_id: str, status: RunStatus, planned: Planned) -> CycleResult:
        read = planned.read
        result = cls(run_id, status, planned.plan, read.resync, suspect=dict(read.suspect))
        result.full_read = read.full
        if planned.linked:
            result.applied[ActionKind.LINK.value] += planned.linked
        return result

    def outcome(self, status: RunStatus | None = None) -> runs.RunOutcome:
        return runs.RunOutcome(
            status=status or RunStatus(self.status),
            graph_requests=self.graph_requests,
            counts=dict(self.applied),
            held=dict(self.held),
            resync=self.resync,
            message="; ".join(self.suspect.values()) or None,
            suspect=self.suspect,
        )


def _limits(config: Config, total_users: int) -> dict[ActionKind, int]:
    thresholds: dict[ActionKind, Threshold] = {
        kind: getattr(config.safety, str(ACTIONS[kind].threshold_key)) for kind in GUARDED
    }
    return {kind: t.limit(total_users) for kind, t in thresholds.items()}


def held_kinds(config: Config, the_plan: Plan, total_users: int) -> set[ActionKind]:
    limits = _limits(config, total_users)
    return {k for k in GUARDED if len(the_plan.of_kind(k)) > limits[k]}


def run_cycle(
    store: Store,
    config: Config,
    graph_factory: GraphFactory,
    now: datetime,
    *,
    dry_run: bool = False,
    clock: Clock = wall_clock,
    run_id: str | None = None,
) -> CycleResult:
    """`now` is the cycle's time (what it plans and records against); `clock` says when the
    run finished; `run_id` names the run (the daemon passes one, to find the run again when
    a stop cuts the cycle short), a new id by default."""
    run_id = run_id or str(uuid.uuid4())
    with graph_factory() as graph:
        if dry_run or config.safety.dry_run:
            return _dry_run(store, config, graph, now, run_id)
        start_run(store, run_id, runs.RunKind.SYNC, now)
        try:
            result = _cycle(store, config, graph, now, run_id)
        except EntrasyncError as exc:
            failed = runs.RunOutcome(
                RunStatus.FAILED, graph_requests=graph.counters.total, message=str(exc)
            )
            finish_run(store, run_id, failed, clock)
            raise
        result.graph_requests = graph.counters.total
    finish_run(store, run_id, result.outcome(), clock)
    return result


def _dry_run(
    store: Store, config: Config, graph: GraphClient, now: datetime, run_id: str
) -> CycleResult:
    planned = read_and_plan(store, graph, config, now, dry_run=True)
    held = held_kinds(config, planned.plan, planned.total_users)
    result = CycleResult.of(run_id, RunStatus.DRY_RUN, planned)
    result.graph_requests = graph.counters.total
    result.held.update({k.value: len(planned.plan.of_kind(k)) for k in held})
    return result


def _cycle(
    store: Store, config: Config, graph: GraphClient, now: datetime, run_id: str
) -> CycleResult:
    planned = read_and_plan(store, graph, config, now, run_id=run_id)
    the_plan = planned.plan
    held = held_kinds(config, the_plan, planned.total_users)
    status = RunStatus.HELD if held or planned.read.suspect else RunStatus.OK
    result = CycleResult.of(run_id, status, planned)
    applier = ActionApplier(store, config, run_id, now)
    apply_all(applier, graph, [a for a in the_plan.actions if a.kind not in held], result)
    if held:
        on_hold = [a for a in the_plan.actions if a.kind in held]
        hold(store, config, run_id, now, on_hold, planned.total_users)
        result.held.update({k.value: len(the_plan.of_kind(k)) for k in held})
    with store.unit_of_work(
        now, run_id=run_id, account=config.account, notify=config.notify
    ) as uow:
        # the settings + compliance tail, once, after every action of the run; and the
        # objects now in line leave the queue the next plan examines
        changes.settle(uow, queue_rules(config))
    return result


def apply_all(
    applier: ActionApplier, graph: GraphClient, actions: list[PlannedAction], result: CycleResult
) -> None:
    """Links first, all at once; then each action in its own transaction, in plan order;
    purges last, in batches (a purge never depends on a later action, and merges must have
    moved agents before they go), and only those Graph confirms right now."""
    by_mode: dict[ApplyMode, list[PlannedAction]] = {mode: [] for mode in ApplyMode}
    for action in actions:
        by_mode[ACTIONS[action.kind].mode].append(action)
    if by_mode[ApplyMode.LINKS]:
        result.applied[ActionKind.LINK.value] += applier.apply_links(by_mode[ApplyMode.LINKS])
    done = [a for a in by_mode[ApplyMode.ONE] if applier.apply(a).done]
    purges = by_mode[ApplyMode.PURGES]
    if purges:
        trusted = [
            g for g in configured_groups(applier.config)["delete"] if g not in result.suspect
        ]
        checked = confirm_purges(graph, purges, trusted, applier.group_names())
        crashpoint("confirmed")
        applier.record_unconfirmed(checked.unconfirmed)
        result.unconfirmed = checked.unconfirmed
        done += applier.apply_purges(checked.confirmed)
    for action in done:
        result.applied[action.kind.value] += 1
        _log_applied(result.run_id, action)


def hold(
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
    events = [
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
        for kind, items in by_kind.items()
    ]
    summary = "\n".join(
        f"  {len(items)} {k.value} (limit {limits[k]})" for k, items in by_kind.items()
    )
    with store.unit_of_work(now, run_id=run_id) as uow:
        held_rows.hold(uow, actions)
        uow.audit(*events)
        enqueue(
            uow.session,
            topic="held",
            subject=f"entrasync: actions held by a safety threshold in run {run_id}",
            body=(
                f"Run {run_id} held these actions:\n{summary}\n\n"
                f"Review with `entrasync plan`, then release them with `entrasync approve {run_id}`.\n"
            ),
            recipients=config.notify.admins,
            now=now,
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


def start_run(store: Store, run_id: str, kind: runs.RunKind, now: datetime) -> None:
    with store.unit_of_work(now, run_id=run_id) as uow:
        runs.start(uow, run_id, kind)


def finish_run(store: Store, run_id: str, outcome: runs.RunOutcome, clock: Clock) -> None:
    """The run's outcome, stamped with the clock's reading now (never before its start)."""
    with store.unit_of_work(clock(), run_id=run_id) as uow:
        runs.finish(uow, run_id, outcome)
