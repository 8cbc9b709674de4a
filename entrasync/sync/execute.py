"""Running a plan: the safety thresholds, the actions applied in order, the held ones
recorded for `approve` and announced (one `action.held` record per kind)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from entrasync.config import Config
from entrasync.domain.actions import ACTIONS, GUARDED, ActionKind, ApplyMode
from entrasync.domain.audit import AuditEvent
from entrasync.domain.plan_model import Plan, PlannedAction, Tally
from entrasync.domain.thresholds import Threshold
from entrasync.graph import GraphClient
from entrasync.store import held as held_rows
from entrasync.store.outbox import enqueue
from entrasync.store.uow import UnitOfWork
from entrasync.sync.apply import ActionApplier
from entrasync.sync.confirm import confirm_purges
from entrasync.sync.crashpoints import crashpoint
from entrasync.sync.groups import configured_groups
from entrasync.sync.result import CycleResult

log = logging.getLogger("entrasync.sync")


def limits(config: Config, total_users: int) -> dict[ActionKind, int]:
    thresholds: dict[ActionKind, Threshold] = {
        kind: getattr(config.safety, str(ACTIONS[kind].threshold_key)) for kind in GUARDED
    }
    return {kind: t.limit(total_users) for kind, t in thresholds.items()}


def held_kinds(
    config: Config, counts: Mapping[ActionKind, int], total_users: int
) -> set[ActionKind]:
    """The kinds whose count in the plan (`counts`) is over their threshold."""
    most = limits(config, total_users)
    return {k for k in GUARDED if counts.get(k, 0) > most[k]}


def apply_whole(
    applier: ActionApplier, graph: GraphClient, the_plan: Plan, total: int, result: CycleResult
) -> set[ActionKind]:
    """A plan held whole: the kinds over their threshold recorded held (and returned), the
    others applied."""
    counts = Tally.of(the_plan).count
    held = held_kinds(applier.config, counts, total)
    apply_all(applier, graph, [a for a in the_plan.actions if a.kind not in held], result)
    on_hold = [a for a in the_plan.actions if a.kind in held]
    if on_hold:
        hold(applier, on_hold, total)
        result.held.update({k.value: counts[k] for k in held})
    return held


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
        result.unconfirmed.extend(checked.unconfirmed)
        done += applier.apply_purges(checked.confirmed)
    for action in done:
        result.applied[action.kind.value] += 1
        _log_applied(result.run_id, action)


def hold(applier: ActionApplier, actions: list[PlannedAction], total: int) -> None:
    """Record held actions (for `approve`), audit `action.held` per kind, tell the admins."""
    with applier.unit_of_work() as uow:
        held_rows.hold(uow, actions)
        announce_held(uow, applier.config, Tally.of(Plan(actions)), total)


def announce_held(uow: UnitOfWork, config: Config, held: Tally, total: int) -> None:
    """One `action.held` record per kind held (`held`: what was recorded for `approve`),
    and the admins told."""
    most, run_id = limits(config, total), uow.run_id
    events = [
        AuditEvent(
            "action.held",
            f"{n} {kind.value} actions exceed safety.max_{kind.value}s "
            f"(limit {most[kind]} for {total} users)",
            details={
                "kind": kind.value,
                "count": n,
                "limit": most[kind],
                "licenses_freed": held.licenses_freed[kind],
            },
        )
        for kind, n in held.count.items()
    ]
    summary = "\n".join(f"  {n} {k.value} (limit {most[k]})" for k, n in held.count.items())
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
        now=uow.now,
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
