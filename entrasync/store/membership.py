"""The membership queries a plan starts from: watched members out of line and records to
track again, over the Entra objects queued since they were last in line (store/changes.py)
or over every object."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from itertools import pairwise
from typing import Any

from sqlalchemy import and_, exists, func, or_, select, union
from sqlalchemy.orm import Session

from entrasync.domain.groups import GroupKind
from entrasync.domain.status import Tracking, UntrackedBy
from entrasync.store import queries
from entrasync.store.changed_rows import ChangedObjectRow
from entrasync.store.id_lists import chunks
from entrasync.store.schema import (
    AgentRow,
    EntraGroupRow,
    EntraUserRow,
    ScheduledPurgeRow,
    UserRow,
    WatchedMemberRow,
)


class Examine(StrEnum):
    """Which Entra objects the membership queries (watched members, re-tracking) look at."""

    # Those queued in `changed_objects` since they were last in line (triggers queue every
    # change that can move them; migration 0010, store/changes.py), and those with a purge
    # scheduled: what a cycle plans from, so that it costs what changed.
    QUEUED = "queued"
    # Every one: a dry run's scratch copy (it has no triggers), and the check of the queue
    # on a full read.
    EVERY = "every"


@dataclass(frozen=True)
class Span:
    """Entra object ids from `first` (inclusive) up to `before` (exclusive); None: unbounded.
    A first sync plans the watched members span by span (sync/batches.py)."""

    first: str | None
    before: str | None


# Entra object ids to examine: a list, a span of ids, or None for every one
Objects = Sequence[str] | Span | None


def examined(session: Session, examine: Examine) -> Iterable[Objects]:
    """The object ids to examine, 500 at a time (given as literal lists: SQLite's planner
    without statistics would rather read a whole index than follow a subquery); one None
    for every object."""
    if examine == Examine.EVERY or examines_every(session):
        return [None]
    queued = set(session.scalars(select(ChangedObjectRow.object_id).distinct()))
    queued.update(session.scalars(select(ScheduledPurgeRow.object_id)))
    return chunks(sorted(queued))


# Above this many queue entries (a first sync, a mass change) the queries examine every
# object at once: cheaper than hundreds of lists of ids, and held in memory as rows only.
QUEUED_AT_MOST = 20_000


def examines_every(session: Session) -> bool:
    """Whether a plan from the queue examines every object: the queue is longer than
    `QUEUED_AT_MOST` entries (counted no further than that)."""
    entries = select(ChangedObjectRow.seq).limit(QUEUED_AT_MOST + 1).subquery()
    return int(session.scalar(select(func.count()).select_from(entries)) or 0) > QUEUED_AT_MOST


def restrict(query: Any, column: Any, objects: Objects) -> Any:
    if objects is None:
        return query
    if not isinstance(objects, Span):
        return query.where(column.in_(objects))
    if objects.first is not None:
        query = query.where(column >= objects.first)
    return query if objects.before is None else query.where(column < objects.before)


def watched_spans(session: Session, size: int) -> list[Span]:
    """The watched members' objects cut into spans of `size` objects each (together: every
    object id), read as they stream through ix_watched_members_object."""
    bounds: list[str] = []
    ids = session.scalars(
        select(WatchedMemberRow.object_id)
        .distinct()
        .order_by(WatchedMemberRow.object_id)
        .execution_options(yield_per=10_000)
    )
    for n, object_id in enumerate(ids):
        if n and n % size == 0:
            bounds.append(object_id)
    edges: list[str | None] = [None, *bounds, None]
    return [Span(first, before) for first, before in pairwise(edges)]


# The user columns the planner needs. The first cycle of a tenant links every record, so the
# records it loads are read as plain rows (about a tenth of the memory of ORM objects).
USER_COLUMNS = (
    UserRow.id,
    UserRow.entra_object_id,
    UserRow.tracking,
    UserRow.untracked_by,
    UserRow.status,
    UserRow.last_activity_at,
)


_MEMBERSHIP = (
    WatchedMemberRow.via_group,
    WatchedMemberRow.object_id,
    WatchedMemberRow.kind,
    WatchedMemberRow.first_seen_at,
)


def watched_query(objects: Objects, columns: Sequence[Any] = ()) -> Any:
    """Watched members that call for an action (`columns`: what to return, by default
    the membership, the linked record's `USER_COLUMNS` and the group's suspect state)."""
    wanted = columns or (*_MEMBERSHIP, *USER_COLUMNS, EntraGroupRow.suspect)
    query = (
        select(*wanted)
        .select_from(WatchedMemberRow)
        .join(
            EntraUserRow,
            and_(
                EntraUserRow.object_id == WatchedMemberRow.object_id,
                EntraUserRow.deleted_at.is_(None),
            ),
        )
        .outerjoin(
            UserRow,
            and_(
                UserRow.entra_object_id == WatchedMemberRow.object_id,
                UserRow.merged_into_id.is_(None),
            ),
        )
        .outerjoin(EntraGroupRow, EntraGroupRow.id == WatchedMemberRow.via_group)
        .where(
            or_(
                UserRow.id.is_(None),
                UserRow.tracking == Tracking.TRACKED,
                and_(
                    WatchedMemberRow.kind == GroupKind.DELETE,
                    exists().where(AgentRow.user_id == UserRow.id),
                ),
            ),
        )
    )
    return restrict(query, WatchedMemberRow.object_id, objects)


def retrack_query(on_user_disabled: str, objects: Objects, columns: Sequence[Any]) -> Any:
    """Tracked again only: untracked by entrasync for a membership (or for a disabled account
    that is enabled again), Entra account live (a deleted account leaves every group: a
    departure, not a return), history never purged, and in no watched group (a suspect
    group's frozen rows count). While disabled accounts are untracked, a disabled member
    leaving the groups stays untracked until the account is enabled."""
    enabled = EntraUserRow.account_enabled.is_not(False)
    by_membership = UserRow.untracked_by == UntrackedBy.ENTRASYNC
    if on_user_disabled == "untrack":
        by_membership = and_(by_membership, enabled)
    by_disabled = and_(UserRow.untracked_by == UntrackedBy.ENTRA_DISABLED, enabled)
    # a handful of queued objects: found by their ids, not among every untracked record
    tracking = UserRow.tracking if objects is None else queries.unindexed(UserRow.tracking)
    query = (
        select(*columns)
        .select_from(UserRow)
        .join(EntraUserRow, EntraUserRow.object_id == UserRow.entra_object_id)
        .where(
            or_(by_membership, by_disabled),
            tracking == Tracking.UNTRACKED,
            UserRow.merged_into_id.is_(None),
            UserRow.purged_at.is_(None),
            EntraUserRow.deleted_at.is_(None),
            ~exists().where(WatchedMemberRow.object_id == UserRow.entra_object_id),
        )
    )
    return restrict(query, UserRow.entra_object_id, objects)


@dataclass(frozen=True)
class Rules:
    """The settings that decide whether an object is out of line: `sync.on_user_disabled`
    and `safety.retrack_on_removal` (when it is off, nobody is tracked again, so a departed
    member is in line). The queue remembers them; a change re-examines every object."""

    on_user_disabled: str
    retrack_on_removal: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "on_user_disabled": self.on_user_disabled,
            "retrack_on_removal": self.retrack_on_removal,
        }


def out_of_line(objects: Objects, rules: Rules) -> Any:
    """Which of `objects` the watched-member or the re-tracking query returns, as one
    SELECT of object ids: the objects a cycle must keep examining (store/changes.py)."""
    watched = watched_query(objects, (WatchedMemberRow.object_id,))
    if not rules.retrack_on_removal:
        return watched
    return union(
        watched, retrack_query(rules.on_user_disabled, objects, (UserRow.entra_object_id,))
    )
