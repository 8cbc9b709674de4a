"""Purges in a plan (pure): due now, waiting out `purge_delay` (scheduled, audited once when
first planned), or called off (cancelled) when nothing keeps them any more."""

from __future__ import annotations

from collections.abc import Iterable, Set
from datetime import datetime

from entrasync.domain.actions import ActionKind
from entrasync.domain.durations import format_duration
from entrasync.domain.plan_model import (
    Plan,
    PlannedAction,
    Policy,
    PurgeCause,
    ScheduledPurge,
    ScheduledRecord,
    StoreUser,
)
from entrasync.domain.status import UntrackedBy


def plan_purge(
    user: StoreUser,
    object_id: str,
    due: datetime,
    reason: str,
    cause: PurgeCause,
    group_id: str | None,
    policy: Policy,
    out: Plan,
) -> None:
    if due > policy.now:
        out.scheduled.append(
            ScheduledPurge(user.id, object_id, due, user.licenses, cause, group_id)
        )
        return
    out.actions.append(
        PlannedAction(
            ActionKind.PURGE,
            reason,
            user.id,
            object_id,
            licenses_freed=user.licenses,
            untracked_by=(
                UntrackedBy.ENTRA_DELETED
                if cause == PurgeCause.ENTRA_DELETED
                else UntrackedBy.ENTRASYNC
            ),
            cause=cause,
            group_id=group_id,
        )
    )


def live_purges(part: Plan) -> set[int]:
    """Users whose purge a plan (or a part of one) keeps: due, waiting or suspended."""
    live = {s.user_id for s in part.scheduled} | {s.user_id for s in part.suspended}
    return live | {a.user_id for a in part.actions if a.kind == ActionKind.PURGE and a.user_id}


def plan_scheduled(
    scheduled: list[ScheduledPurge], known: Set[int], policy: Policy, out: Plan
) -> None:
    """Audit each scheduled purge once, when first planned (`known`: already scheduled)."""
    for s in scheduled:
        if s.user_id in known:
            continue
        why = (
            f"member of Delete group {policy.group(s.group_id)}"
            if s.group_id
            else f"Entra user {s.object_id} deleted"
        )
        reason = (
            f"{why}: history will be purged at {s.due_at:%Y-%m-%d %H:%M} UTC "
            f"(purge delay {format_duration(policy.purge_delay)})"
        )
        out.actions.append(_purge_record(ActionKind.SCHEDULE_PURGE, reason, s))


def plan_cancellations(
    records: Iterable[ScheduledRecord], live: Set[int], policy: Policy
) -> list[PlannedAction]:
    """A scheduled purge that is neither due, still waiting, nor suspended any more (`live`,
    from every part of the plan) was called off: audited as cancelled."""
    cancelled = []
    for record in records:
        if record.user_id in live:
            continue
        why = (
            f"no longer a member of Delete group {policy.group(record.group_id)}"
            if record.group_id is not None
            else f"Entra user {record.object_id} is no longer deleted"
        )
        reason = f"{why}: the purge due {record.due_at:%Y-%m-%d %H:%M} UTC is cancelled"
        cancelled.append(_purge_record(ActionKind.CANCEL_PURGE, reason, record))
    return cancelled


def _purge_record(
    kind: ActionKind, reason: str, purge: ScheduledPurge | ScheduledRecord
) -> PlannedAction:
    """The audited action that schedules or cancels `purge`, carrying its cause, group and
    due time."""
    return PlannedAction(
        kind,
        reason,
        purge.user_id,
        purge.object_id,
        cause=purge.cause,
        group_id=purge.group_id,
        due_at=purge.due_at,
    )
