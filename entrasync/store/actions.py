"""The rows a cycle's planned actions change (the applier's handlers decide; this module
reads and writes). Each function checks the current state first, so an action applied
twice changes nothing the second time."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, exists, select, text, update
from sqlalchemy.orm import Session

from entrasync.domain.evidence import RANK_ADDRESS
from entrasync.domain.status import Tracking, UntrackedBy, UserStatus
from entrasync.store import tally
from entrasync.store.driver import IdArray, on_postgresql
from entrasync.store.schema import (
    ActivityRow,
    AgentRow,
    AuditRow,
    EntraKeyRow,
    EntraUserRow,
    IdentifierRow,
    RetiredIdentifierRow,
    ScheduledPurgeRow,
    UserRow,
)

_BATCH = 500


def user(session: Session, user_id: int | None) -> UserRow | None:
    return session.get(UserRow, user_id) if user_id is not None else None


def live_user(session: Session, user_id: int | None) -> UserRow | None:
    """The record `user_id` stands for now (following merges to their survivor)."""
    found = user(session, user_id)
    while found is not None and found.merged_into_id is not None:
        found = session.get(UserRow, found.merged_into_id)
    return found


def object_taken(session: Session, object_id: str | None) -> bool:
    """A record is already linked to the Entra object."""
    return (
        session.scalar(select(UserRow.id).where(UserRow.entra_object_id == object_id)) is not None
    )


def link_users(session: Session, pairs: dict[int, str]) -> int:
    """Link each record to its object, set-based; records or objects already linked are left
    alone. Returns how many were linked."""
    users, objects = list(pairs), list(pairs.values())
    taken: set[str | None] = set()
    free_users: set[int] = set()
    for start in range(0, len(users), _BATCH):
        taken.update(
            session.scalars(
                select(UserRow.entra_object_id).where(
                    UserRow.entra_object_id.in_(objects[start : start + _BATCH])
                )
            )
        )
        free_users.update(
            session.scalars(
                select(UserRow.id).where(
                    UserRow.id.in_(users[start : start + _BATCH]),
                    UserRow.entra_object_id.is_(None),
                )
            )
        )
    rows = [
        {"uid": uid, "obj": obj}
        for uid, obj in pairs.items()
        if uid in free_users and obj not in taken
    ]
    if rows:
        _set_object_ids(session, rows)
    return len(rows)


# One UPDATE per this many links on PostgreSQL.
_LINKS_PER_STATEMENT = 10_000
_LINK_FROM_ARRAYS = text(
    "UPDATE users SET entra_object_id = v.obj "
    "FROM unnest(CAST(:uids AS BIGINT[]), CAST(:objs AS VARCHAR[])) AS v(uid, obj) "
    "WHERE users.id = v.uid"
)


def _set_object_ids(session: Session, rows: list[dict[str, Any]]) -> None:
    """On PostgreSQL one UPDATE from two arrays per 10,000 links: an UPDATE per record,
    unprepared (store/engines.py), each firing the users' statement trigger, took 8.5 s per
    100,000 records of a first sync. SQLite's executemany reuses one compiled statement."""
    if not on_postgresql(session):
        table = cast(Table, UserRow.__table__)
        session.execute(
            update(table)
            .where(table.c.id == bindparam("uid"))
            .values(entra_object_id=bindparam("obj")),
            rows,
        )
        return
    for start in range(0, len(rows), _LINKS_PER_STATEMENT):
        part = rows[start : start + _LINKS_PER_STATEMENT]
        uids, objs = IdArray(r["uid"] for r in part), [r["obj"] for r in part]
        session.execute(_LINK_FROM_ARRAYS, {"uids": uids, "objs": objs})


def retire_identifier(
    session: Session, user_id: int, kind: str, value: str, now: datetime, reason: str
) -> bool:
    """Move the record's identifier to its retired ones; False when it no longer has it."""
    row = session.scalar(
        select(IdentifierRow).where(
            IdentifierRow.user_id == user_id,
            IdentifierRow.kind == kind,
            IdentifierRow.value == value,
        )
    )
    if row is None:
        return False
    session.delete(row)
    session.add(
        RetiredIdentifierRow(user_id=user_id, kind=kind, value=value, retired_at=now, reason=reason)
    )
    return True


def scheduled_purge(session: Session, user_id: int | None) -> ScheduledPurgeRow | None:
    return session.get(ScheduledPurgeRow, user_id) if user_id is not None else None


def schedule_purge(session: Session, row: ScheduledPurgeRow) -> None:
    session.add(row)


def cancel_purge(session: Session, row: ScheduledPurgeRow) -> None:
    session.delete(row)


def merge_skip_recorded(session: Session, user_id: int | None, object_id: str | None) -> bool:
    """A `merge.skipped` record for this record and object is already in the audit log."""
    return bool(
        session.scalar(
            select(
                exists().where(
                    AuditRow.action == "merge.skipped",
                    AuditRow.user_id == user_id,
                    AuditRow.entra_object_id == object_id,
                )
            )
        )
    )


def preregister(session: Session, object_id: str, now: datetime) -> int | None:
    """A new Untracked record for the Entra object, with the object's own identifiers that
    no record holds yet; None when the object is linked already or not mirrored."""
    entra = session.get(EntraUserRow, object_id)
    if object_taken(session, object_id) or entra is None:
        return None
    row = UserRow(
        tracking=Tracking.UNTRACKED,
        untracked_by=UntrackedBy.ENTRASYNC,
        status=UserStatus.ACTIVE,
        entra_object_id=object_id,
        display_name=entra.display_name,
        created_at=now,
    )
    session.add(row)
    session.flush()
    tally.created(session, [row.id])
    owned = select(IdentifierRow.id).where(
        IdentifierRow.kind == EntraKeyRow.kind, IdentifierRow.value == EntraKeyRow.value
    )
    keys = session.execute(
        select(EntraKeyRow.kind, EntraKeyRow.value).where(
            EntraKeyRow.object_id == object_id,
            EntraKeyRow.rank <= RANK_ADDRESS,
            ~owned.exists(),
        )
    ).all()
    session.add_all(IdentifierRow(user_id=row.id, kind=k, value=v) for k, v in keys)
    session.flush()
    return row.id


def history(session: Session, user_id: int) -> Iterator[dict[str, Any]]:
    """The user's activity, oldest first, as export records (streamed)."""
    rows = session.execute(
        select(ActivityRow)
        .join(AgentRow, AgentRow.id == ActivityRow.agent_id)
        .where(AgentRow.user_id == user_id)
        .order_by(ActivityRow.id)
        .execution_options(yield_per=5000)
    ).scalars()
    for row in rows:
        yield {
            "agent_id": row.agent_id,
            "device": row.device,
            "start": row.start.isoformat(),
            "duration_s": row.duration_s,
            "app": row.app,
            "title": row.title,
        }
