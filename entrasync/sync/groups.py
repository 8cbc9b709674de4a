"""Watched groups' state: display names, suspect reads, acceptance.

The rules are in `entrasync.domain.groups`; this module applies them to what a round saw,
updates the group rows (`entrasync.store.groups`), and audits each transition in the same
unit of work (`group.suspect` with one email to the admins, `group.recovered`,
`group.accepted`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from entrasync.config import Config
from entrasync.domain.audit import AuditEvent
from entrasync.domain.groups import (
    GroupKind,
    GroupRead,
    GroupState,
    SuspectReason,
    Transition,
    describe,
    group_label,
    next_state,
    verdict,
)
from entrasync.errors import NotFound
from entrasync.store import groups as rows
from entrasync.store import mirror as mirror_rows
from entrasync.store.db import Store
from entrasync.store.outbox import enqueue
from entrasync.store.schema import EntraGroupRow
from entrasync.store.session import Session
from entrasync.store.uow import UnitOfWork
from entrasync.sync.mirror import GroupRoundStats, update_watched


def configured_groups(config: Config) -> dict[str, list[str]]:
    """Group kind -> configured group ids (lower-case, as the mirror stores them)."""
    return {
        GroupKind.DNT: [g.lower() for g in config.groups.dnt],
        GroupKind.DELETE: [g.lower() for g in config.groups.delete],
    }


def judge(uow: UnitOfWork, config: Config, stats: GroupRoundStats) -> dict[str, str]:
    """Apply one round's reads to each configured group; returns suspect group -> why.
    Only the groups the round mentioned are counted (`stats.before`): one it said nothing
    about reads as silent, whatever its size."""
    session, now = uow.session, uow.now
    roots = configured_groups(config)
    before = stats.before
    after = mirror_rows.direct_counts(session, before)
    found = rows.group_rows(session)
    events: list[AuditEvent] = []
    for kind, groups in roots.items():
        for group in groups:
            read = GroupRead(
                seen=group in stats.seen_groups,
                deleted=group in stats.deleted_groups,
                full=group in stats.full_groups,
                members_before=before.get(group, 0),
                members_after=after.get(group, 0),
            )
            row = found.get(group) or rows.add_group_row(session, group, kind, now)
            row.role = kind
            row.display_name = stats.names.get(group, row.display_name)
            row.updated_at = now
            event = _transition(row, read, now)
            if event is not None:
                events.append(event)
    configured = [g for gs in roots.values() for g in gs]
    rows.drop_unwatched_groups(session, configured)
    if events:
        uow.audit(*events)
        _notify(uow, config, [e for e in events if e.action == "group.suspect"])
    return {
        r.id: r.suspect_detail or "" for r in found.values() if r.suspect and r.id in configured
    }


def _transition(row: EntraGroupRow, read: GroupRead, now: datetime) -> AuditEvent | None:
    current = SuspectReason(row.suspect) if row.suspect else None
    accepted = SuspectReason(row.accepted) if row.accepted else None
    state, change = next_state(GroupState(current, accepted), verdict(read, current))
    details = {
        "group_id": row.id,
        "group_name": row.display_name,
        "kind": row.role,
        "members_before": read.members_before,
        "members_after": read.members_after,
    }
    if change == Transition.SUSPECT:
        assert state.suspect is not None
        return _suspect(row, state.suspect, read, now, details)
    if change == Transition.RECOVERED:
        was = row.suspect_detail
        row.suspect = row.suspect_since = row.suspect_detail = None
        row.accepted = row.accepted_at = None
        return AuditEvent(
            "group.recovered",
            f"{group_label(row.role)} group {_name(row)} reads normally again (was: {was})",
            details=details,
        )
    if state.accepted is None and row.accepted:
        row.accepted = row.accepted_at = None
    return None


def _suspect(
    row: EntraGroupRow,
    reason: SuspectReason,
    read: GroupRead,
    now: datetime,
    details: dict[str, Any],
) -> AuditEvent:
    row.suspect, row.suspect_since = reason.value, now
    row.suspect_detail = describe(row.role, _name(row), reason, read.members_before)
    row.accepted = row.accepted_at = None
    return AuditEvent(
        "group.suspect",
        f"{row.suspect_detail}: nothing is derived from its membership (no untrack, retrack, "
        "pre-registration or purge) and its scheduled purges are suspended until it reads "
        f"normally again or an admin runs `entrasync groups accept {row.id}`",
        details={**details, "suspect": reason.value},
    )


def _name(row: EntraGroupRow) -> str:
    return f"{row.display_name!r} ({row.id})" if row.display_name else row.id


def _notify(uow: UnitOfWork, config: Config, events: list[AuditEvent]) -> None:
    if not events:
        return
    lines = "\n".join(f"  - {e.reason}" for e in events)
    enqueue(
        uow.session,
        topic="group.suspect",
        subject=f"entrasync: {len(events)} watched group(s) read suspiciously; actions paused",
        body=(
            f"{lines}\n\nReview with `entrasync groups list`. If the read is right (the group "
            "really was deleted or emptied), accept it with `entrasync groups accept GROUP_ID`; "
            "the consequences are then planned, and safety thresholds still apply.\n"
        ),
        recipients=config.notify.admins,
        now=uow.now,
    )


@dataclass(frozen=True)
class GroupStatus:
    id: str
    name: str | None
    kind: str
    members: int
    state: str  # "ok" | "suspect" | "accepted" | "not read yet"
    detail: str | None
    since: datetime | None


def list_groups(session: Session, config: Config) -> list[GroupStatus]:
    """The configured groups with their last read state (groups never read say so)."""
    found = rows.group_rows(session)
    counts = rows.watched_counts(session)
    out = []
    for kind, groups in configured_groups(config).items():
        for group in groups:
            row = found.get(group)
            state, detail, since = "not read yet", None, None
            if row is not None:
                state = "suspect" if row.suspect else "accepted" if row.accepted else "ok"
                detail = row.suspect_detail
                since = row.suspect_since or row.accepted_at
            name = row.display_name if row else None
            out.append(GroupStatus(group, name, kind, counts.get(group, 0), state, detail, since))
    return out


def accept_read(uow: UnitOfWork, config: Config, group_id: str) -> GroupStatus:
    """An admin accepts a suspect group's read: its watched members are re-derived from the
    mirror now (the next cycle plans the consequences, thresholds apply), audited."""
    session, group = uow.session, group_id.lower()
    kind = next((k for k, gs in configured_groups(config).items() if group in gs), None)
    row = rows.group_row(session, group)
    if kind is None or row is None:
        raise NotFound(f"group {group_id} is not a watched group (see `entrasync groups list`)")
    if not row.suspect:
        raise NotFound(f"group {_name(row)} is not suspect: there is nothing to accept")
    was, reason = row.suspect_detail, row.suspect
    row.accepted, row.accepted_at = reason, uow.now
    row.suspect = row.suspect_since = row.suspect_detail = None
    before = mirror_rows.direct_counts(session, [group])[group]
    update = update_watched(session, {kind: [group]}, set(), uow.now)
    uow.audit(
        AuditEvent(
            "group.accepted",
            f"admin accepted the read of {group_label(kind)} group {_name(row)} ({was}); "
            "its consequences are planned by the next cycle",
            details={
                "group_id": group,
                "group_name": row.display_name,
                "kind": kind,
                "accepted": reason,
                "direct_members_read": before,
                "members_removed": update.removed,
                "members_added": update.added,
            },
        )
    )
    return next(g for g in list_groups(session, config) if g.id == group)


def accept(
    store: Store, session: Session, config: Config, group_id: str, actor: str, now: datetime
) -> GroupStatus:
    """`accept_read` in the caller's transaction (the CLI's form until it opens a unit of work)."""
    return accept_read(
        UnitOfWork(session, store.audit_lock, now=now, actor=actor, run_id=None), config, group_id
    )
