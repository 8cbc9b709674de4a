"""Watched groups' state in the store: display names, suspect reads, acceptance.

The rules are in `entrasync.domain.groups`; this module reads what a round saw, applies the
rules, writes `entra_groups`, and audits each transition in the same transaction
(`group.suspect` with one email to the admins, `group.recovered`, `group.accepted`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from entrasync.config import Config
from entrasync.domain.audit import SYSTEM_ACTOR, AuditEvent
from entrasync.domain.groups import (
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
from entrasync.store import audit
from entrasync.store.db import Store
from entrasync.store.outbox import enqueue
from entrasync.store.schema import EntraGroupRow, WatchedMemberRow
from entrasync.sync import mirror
from entrasync.sync.mirror import GroupRoundStats


def configured_groups(config: Config) -> dict[str, list[str]]:
    """Group kind -> configured group ids (lower-case, as the mirror stores them)."""
    return {
        "dnt": [g.lower() for g in config.groups.dnt],
        "delete": [g.lower() for g in config.groups.delete],
    }


def judge(
    store: Store,
    session: Session,
    config: Config,
    stats: GroupRoundStats,
    before: Mapping[str, int],
    now: datetime,
    run_id: str | None,
) -> dict[str, str]:
    """Apply one round's reads to each configured group; returns suspect group -> why."""
    roots = configured_groups(config)
    after = mirror.direct_counts(session, before)
    rows = {r.id: r for r in session.scalars(select(EntraGroupRow))}
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
            row = rows.get(group) or _new_row(session, group, kind, now)
            row.role = kind
            row.display_name = stats.names.get(group, row.display_name)
            row.updated_at = now
            event = _transition(row, read, now)
            if event is not None:
                events.append(event)
    configured = [g for gs in roots.values() for g in gs]
    session.execute(delete(EntraGroupRow).where(EntraGroupRow.id.not_in(configured)))
    session.flush()
    if events:
        audit.append(store, session, events, actor=SYSTEM_ACTOR, now=now, run_id=run_id)
        _notify(session, config, [e for e in events if e.action == "group.suspect"], now)
    return {r.id: r.suspect_detail or "" for r in rows.values() if r.suspect and r.id in configured}


def _new_row(session: Session, group: str, kind: str, now: datetime) -> EntraGroupRow:
    row = EntraGroupRow(id=group, role=kind, updated_at=now)
    session.add(row)
    return row


def _transition(row: EntraGroupRow, read: GroupRead, now: datetime) -> AuditEvent | None:
    current = SuspectReason(row.suspect) if row.suspect else None
    accepted = SuspectReason(row.accepted) if row.accepted else None
    state, change = next_state(GroupState(current, accepted), verdict(read, current))
    name = _name(row)
    details = {
        "group_id": row.id,
        "group_name": row.display_name,
        "kind": row.role,
        "members_before": read.members_before,
        "members_after": read.members_after,
    }
    if change == Transition.SUSPECT:
        assert state.suspect is not None
        row.suspect, row.suspect_since = state.suspect.value, now
        row.suspect_detail = describe(row.role, name, state.suspect, read.members_before)
        row.accepted = row.accepted_at = None
        return AuditEvent(
            "group.suspect",
            f"{row.suspect_detail}: nothing is derived from its membership (no untrack, retrack, "
            "pre-registration or purge) and its scheduled purges are suspended until it reads "
            f"normally again or an admin runs `entrasync groups accept {row.id}`",
            details={**details, "suspect": state.suspect.value},
        )
    if change == Transition.RECOVERED:
        was = row.suspect_detail
        row.suspect = row.suspect_since = row.suspect_detail = None
        row.accepted = row.accepted_at = None
        return AuditEvent(
            "group.recovered",
            f"{group_label(row.role)} group {name} reads normally again (was: {was})",
            details=details,
        )
    if state.accepted is None and row.accepted:
        row.accepted = row.accepted_at = None
    return None


def _name(row: EntraGroupRow) -> str:
    return f"{row.display_name!r} ({row.id})" if row.display_name else row.id


def _notify(session: Session, config: Config, events: list[AuditEvent], now: datetime) -> None:
    if not events:
        return
    lines = "\n".join(f"  - {e.reason}" for e in events)
    enqueue(
        session,
        topic="group.suspect",
        subject=f"entrasync: {len(events)} watched group(s) read suspiciously; actions paused",
        body=(
            f"{lines}\n\nReview with `entrasync groups list`. If the read is right (the group "
            "really was deleted or emptied), accept it with `entrasync groups accept GROUP_ID`; "
            "the consequences are then planned, and safety thresholds still apply.\n"
        ),
        recipients=config.notify.admins,
        now=now,
    )


@dataclass(frozen=True)
class GroupStatus:
    id: str
    name: str | None
    kind: str
    members: int
    state: str  # "ok" | "suspect" | "accepted"
    detail: str | None
    since: datetime | None


def list_groups(session: Session, config: Config) -> list[GroupStatus]:
    """The configured groups with their last read state (groups never read say so)."""
    rows = {r.id: r for r in session.scalars(select(EntraGroupRow))}
    counts = dict(
        session.execute(
            select(WatchedMemberRow.via_group, func.count()).group_by(WatchedMemberRow.via_group)
        ).all()
    )
    out = []
    for kind, groups in configured_groups(config).items():
        for group in groups:
            row = rows.get(group)
            state, detail, since = "not read yet", None, None
            if row is not None:
                state = "suspect" if row.suspect else "accepted" if row.accepted else "ok"
                detail = row.suspect_detail
                since = row.suspect_since or row.accepted_at
            name = row.display_name if row else None
            out.append(
                GroupStatus(group, name, kind, int(counts.get(group, 0)), state, detail, since)
            )
    return out


def accept(
    store: Store, session: Session, config: Config, group_id: str, actor: str, now: datetime
) -> GroupStatus:
    """An admin accepts a suspect group's read: its watched members are re-derived from the
    mirror now (the next cycle plans the consequences, thresholds apply), audited."""
    group = group_id.lower()
    roots = configured_groups(config)
    kind = next((k for k, gs in roots.items() if group in gs), None)
    row = session.get(EntraGroupRow, group)
    if kind is None or row is None:
        raise NotFound(f"group {group_id} is not a watched group (see `entrasync groups list`)")
    if not row.suspect:
        raise NotFound(f"group {_name(row)} is not suspect: there is nothing to accept")
    was, reason = row.suspect_detail, row.suspect
    row.accepted, row.accepted_at = reason, now
    row.suspect = row.suspect_since = row.suspect_detail = None
    before = mirror.direct_counts(session, [group])[group]
    update = mirror.update_watched(
        session, {kind: [group]}, mirror.mirror_edges(session), set(), now
    )
    audit.append(
        store,
        session,
        [
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
        ],
        actor=actor,
        now=now,
    )
    return next(g for g in list_groups(session, config) if g.id == group)
