"""One handler per action kind applied one at a time (`ApplyMode.ONE`): it re-checks the
current state, changes the rows in the caller's unit of work, and returns the audit events
to write, or None when the state had already moved on (nothing to do)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from entrasync.config import Config
from entrasync.domain.actions import ACTIONS, ActionKind, ApplyMode
from entrasync.domain.audit import AuditEvent
from entrasync.domain.planning import PlannedAction
from entrasync.domain.status import Tracking, UntrackedBy
from entrasync.store import actions as rows
from entrasync.store import operations, queries
from entrasync.store.schema import ScheduledPurgeRow, UserRow
from entrasync.store.uow import UnitOfWork

Events = list[AuditEvent] | None
Handler = Callable[[UnitOfWork, PlannedAction, Config], Events]


def event(
    uow: UnitOfWork,
    action: PlannedAction,
    details: dict[str, Any],
    user: UserRow | None = None,
    reason: str | None = None,
    name: str | None = None,
) -> AuditEvent:
    """The audit event of `action` (its kind's audit action unless `name`), naming the user
    with their identifiers as they are now."""
    user_id = user.id if user is not None else action.user_id
    identifiers = queries.identifiers_of(uow.session, user_id) if user_id is not None else []
    return AuditEvent(
        name or str(ACTIONS[action.kind].audit_action),
        reason or action.reason,
        user_id,
        action.object_id,
        identifiers,
        details,
    )


def _retire(uow: UnitOfWork, action: PlannedAction, config: Config) -> Events:
    assert action.identifier is not None and action.user_id is not None
    kind, value = action.identifier
    before = queries.identifiers_of(uow.session, action.user_id)
    if not rows.retire_identifier(uow.session, action.user_id, kind, value, uow.now, action.reason):
        return None
    details = {"kind": kind, "value": value, "new_owner_entra_object_id": action.object_id}
    return [
        AuditEvent(
            "identifier.retired", action.reason, action.user_id, action.object_id, before, details
        )
    ]


def _schedule_purge(uow: UnitOfWork, action: PlannedAction, config: Config) -> Events:
    user = rows.live_user(uow.session, action.user_id)
    if user is None or rows.scheduled_purge(uow.session, user.id) is not None:
        return None
    assert action.due_at is not None and action.object_id is not None
    rows.schedule_purge(
        uow.session,
        ScheduledPurgeRow(
            user_id=user.id,
            object_id=action.object_id,
            cause=str(action.cause),
            group_id=action.group_id,
            due_at=action.due_at,
            scheduled_at=uow.now,
        ),
    )
    details = {"due_at": action.due_at.isoformat(), "cause": action.cause}
    if action.group_id:
        details["group_id"] = action.group_id
    return [event(uow, action, details, user)]


def _cancel_purge(uow: UnitOfWork, action: PlannedAction, config: Config) -> Events:
    row = rows.scheduled_purge(uow.session, action.user_id)
    if row is None:
        return None
    rows.cancel_purge(uow.session, row)
    return [event(uow, action, {"was_due_at": row.due_at.isoformat(), "cause": row.cause})]


def _merge(uow: UnitOfWork, action: PlannedAction, config: Config) -> Events:
    target = rows.user(uow.session, action.user_id)
    if target is None or target.merged_into_id is not None:
        return None
    events = []
    for source_id in action.source_user_ids:
        source = rows.user(uow.session, source_id)
        if source is None or source.merged_into_id is not None:
            continue
        identifiers = queries.identifiers_of(uow.session, source.id)
        details = operations.merge_users(
            uow.session, source, target, config.merge.agent_merge, apply=True
        )
        events.append(
            AuditEvent(
                "user.merged", action.reason, source.id, action.object_id, identifiers, details
            )
        )
    linkable = target.entra_object_id is None and action.object_id
    if linkable and not rows.object_taken(uow.session, action.object_id):
        target.entra_object_id = action.object_id
    return events


def _merge_skipped(uow: UnitOfWork, action: PlannedAction, config: Config) -> Events:
    if rows.merge_skip_recorded(uow.session, action.user_id, action.object_id):
        return None
    return [event(uow, action, {})]


def _preregister(uow: UnitOfWork, action: PlannedAction, config: Config) -> Events:
    assert action.object_id is not None
    user_id = rows.preregister(uow.session, action.object_id, uow.now)
    if user_id is None:
        return None
    identifiers = queries.identifiers_of(uow.session, user_id)
    details = {"tracking": Tracking.UNTRACKED.value}
    return [
        AuditEvent(
            "user.preregistered", action.reason, user_id, action.object_id, identifiers, details
        )
    ]


def _untrack(uow: UnitOfWork, action: PlannedAction, config: Config) -> Events:
    user = rows.live_user(uow.session, action.user_id)
    if user is None or user.tracking == Tracking.UNTRACKED:
        return None
    details = operations.set_tracking(
        uow.session, user, Tracking.UNTRACKED, action.untracked_by, apply=True
    )
    return [event(uow, action, details, user)]


def _retrack(uow: UnitOfWork, action: PlannedAction, config: Config) -> Events:
    user = rows.live_user(uow.session, action.user_id)
    if user is None or user.tracking == Tracking.TRACKED:
        return None
    if user.untracked_by not in (UntrackedBy.ENTRASYNC, UntrackedBy.ENTRA_DISABLED):
        return None  # an admin's untracking (or a deleted account's) is never undone here
    details = operations.set_tracking(
        uow.session, user, Tracking.TRACKED, UntrackedBy.ENTRASYNC, apply=True
    )
    return [event(uow, action, details, user)]


HANDLERS: Mapping[ActionKind, Handler] = {
    ActionKind.RETIRE_IDENTIFIER: _retire,
    ActionKind.SCHEDULE_PURGE: _schedule_purge,
    ActionKind.CANCEL_PURGE: _cancel_purge,
    ActionKind.MERGE: _merge,
    ActionKind.MERGE_SKIPPED: _merge_skipped,
    ActionKind.PREREGISTER: _preregister,
    ActionKind.UNTRACK: _untrack,
    ActionKind.RETRACK: _retrack,
}

# Every kind applied one at a time has a handler (a new kind without one fails at import).
assert {k for k, s in ACTIONS.items() if s.mode == ApplyMode.ONE} == set(HANDLERS)
