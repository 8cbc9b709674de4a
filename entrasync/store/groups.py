"""Watched groups in the store: their read state (`entra_groups`: name, suspect, accepted)
and their materialised effective membership (`watched_members`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import String, delete, exists, func, literal, select, text
from sqlalchemy.orm import Session

from entrasync.store.driver import on_postgresql
from entrasync.store.id_lists import chunks
from entrasync.store.schema import EntraGroupRow, EntraMemberRow, UtcDateTime, WatchedMemberRow
from entrasync.store.upsert import insert_for

_BATCH = 500


def group_rows(session: Session) -> dict[str, EntraGroupRow]:
    return {r.id: r for r in session.scalars(select(EntraGroupRow))}


def group_row(session: Session, group_id: str) -> EntraGroupRow | None:
    return session.get(EntraGroupRow, group_id)


def add_group_row(session: Session, group_id: str, kind: str, now: datetime) -> EntraGroupRow:
    row = EntraGroupRow(id=group_id, role=kind, updated_at=now)
    session.add(row)
    return row


def drop_unwatched_groups(session: Session, configured: list[str]) -> None:
    """Rows of groups no longer configured go; the rest are flushed."""
    session.execute(delete(EntraGroupRow).where(EntraGroupRow.id.not_in(configured)))
    session.flush()


def group_names(session: Session) -> dict[str, str]:
    return {row.id: row.display_name for row in group_rows(session).values() if row.display_name}


def group_states(session: Session) -> tuple[dict[str, str], dict[str, str]]:
    """(group id -> display name, suspect group id -> why) of the watched groups."""
    names: dict[str, str] = {}
    suspect: dict[str, str] = {}
    for row in group_rows(session).values():
        if row.display_name:
            names[row.id] = row.display_name
        if row.suspect:
            suspect[row.id] = row.suspect_detail or row.suspect
    return names, suspect


def watched_counts(session: Session) -> dict[str, int]:
    """Effective members of each watched group."""
    rows = session.execute(
        select(WatchedMemberRow.via_group, func.count()).group_by(WatchedMemberRow.via_group)
    )
    return {group: int(count) for group, count in rows}


def drop_unconfigured_members(session: Session, configured: list[str]) -> None:
    """A group removed from the config no longer decides anything (its rows go)."""
    session.execute(delete(WatchedMemberRow).where(WatchedMemberRow.via_group.not_in(configured)))


def set_watched_subset(
    session: Session,
    kind: str,
    group: str,
    examined: Sequence[str],
    members: set[str],
    now: datetime,
) -> tuple[int, int]:
    """Of the `examined` objects, the group's rows become those in `members`; the others'
    rows are left alone. Continuing members keep `first_seen_at`. Returns (added, removed)."""
    old: set[str] = set()
    for chunk in chunks(list(examined)):
        old.update(
            session.scalars(
                select(WatchedMemberRow.object_id).where(
                    WatchedMemberRow.via_group == group, WatchedMemberRow.object_id.in_(chunk)
                )
            )
        )
    wanted = members & set(examined)
    return _write_watched(session, kind, group, sorted(wanted - old), sorted(old - wanted), now)


def derive_watched(
    session: Session, kind: str, group: str, inside: Sequence[str], now: datetime
) -> tuple[int, int]:
    """The group's rows become the user members of the groups `inside` it (itself and
    every group nested in it), in two statements: a first sync derives groups of any size
    without holding their members. Continuing members keep `first_seen_at`. Returns
    (added, removed)."""
    with hashed_anti_join(session):
        removed = session.execute(stale_watched(group, inside))
    rows = (
        select(
            EntraMemberRow.member_id,
            literal(group, String()),
            literal(kind, String()),
            literal(now, UtcDateTime()),
        )
        .where(*_user_edge(inside))
        .distinct()
    )
    added = session.execute(
        insert_for(session, WatchedMemberRow)
        .from_select(["object_id", "via_group", "kind", "first_seen_at"], rows)
        .on_conflict_do_nothing()
        # an INSERT's rowcount is kept only on request (SQLAlchemy 2.0.28; -1 on PostgreSQL)
        .execution_options(preserve_rowcount=True)
    )
    return _rowcount(added), _rowcount(removed)


def _user_edge(inside: Sequence[str]) -> tuple[Any, Any]:
    return EntraMemberRow.group_id.in_(inside), EntraMemberRow.member_type == "user"


def stale_watched(group: str, inside: Sequence[str]) -> Any:
    """The DELETE of the group's rows whose member is no user member of a group `inside`."""
    # NOT EXISTS, not NOT IN: PostgreSQL turns it into an anti-join; a NOT IN list larger
    # than work_mem would be scanned once per row
    still = exists().where(
        EntraMemberRow.member_id == WatchedMemberRow.object_id, *_user_edge(inside)
    )
    return delete(WatchedMemberRow).where(WatchedMemberRow.via_group == group, ~still)


@contextmanager
def hashed_anti_join(session: Session) -> Iterator[None]:
    """PostgreSQL plans the anti-join from the mirror's statistics; a group that grew since
    the last ANALYZE (or a table never analyzed) looks like one row, and a nested loop over
    it costs members squared (100,000 members: 480 s instead of 0.5 s). Nested loops are off
    for this statement only (`set_config(…, true)` lasts at most until the transaction ends;
    an error rolls the transaction and the setting back)."""
    if not on_postgresql(session):
        yield
        return
    was = session.scalar(text("SELECT current_setting('enable_nestloop')"))
    session.execute(text("SELECT set_config('enable_nestloop', 'off', true)"))
    yield
    session.execute(text("SELECT set_config('enable_nestloop', :was, true)"), {"was": was})


def _rowcount(result: Any) -> int:
    return int(result.rowcount or 0)


def _write_watched(
    session: Session, kind: str, group: str, added: list[str], removed: list[str], now: datetime
) -> tuple[int, int]:
    if added:
        session.execute(
            insert_for(session, WatchedMemberRow).on_conflict_do_nothing(),
            [
                {"via_group": group, "object_id": o, "kind": kind, "first_seen_at": now}
                for o in added
            ],
        )
    for start in range(0, len(removed), _BATCH):
        session.execute(
            delete(WatchedMemberRow).where(
                WatchedMemberRow.via_group == group,
                WatchedMemberRow.object_id.in_(removed[start : start + _BATCH]),
            )
        )
    return len(added), len(removed)
