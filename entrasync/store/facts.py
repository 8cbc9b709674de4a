"""The planner's inputs (`Facts`): set-based queries that return discrepancies only.

In a steady state (nothing changed in Entra or the store) every query returns no rows, so
planning costs a handful of indexed queries whatever the size of the tenant.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.orm import Session, aliased

from entrasync.config import SyncConfig
from entrasync.domain.evidence import RANK_ADDRESS
from entrasync.domain.groups import GroupKind
from entrasync.domain.planning import (
    Facts,
    IdentityMatch,
    PurgeCause,
    Retirement,
    ScheduledRecord,
    StoreUser,
    WatchedMember,
)
from entrasync.domain.status import Tracking
from entrasync.store import membership, queries, tally
from entrasync.store.id_lists import chunks
from entrasync.store.schema import (
    AgentRow,
    EntraKeyRow,
    EntraUserRow,
    IdentifierRow,
    ScheduledPurgeRow,
    UserRow,
    WatchedMemberRow,
)

# Identifier kinds that UPN reuse can move to another person. Logons are not: a known logon
# keeps matching its record (a restored account reporting from its old computer).
RETIRABLE_KINDS = ("upn", "email")


def _user_rows(session: Session, column: Any, values: Sequence[Any]) -> list[Any]:
    """Live records whose `column` is one of `values`, 500 at a time, as plain rows."""
    found: list[Any] = []
    for chunk in chunks(list(values)):
        found.extend(
            session.execute(
                select(*membership.USER_COLUMNS).where(
                    column.in_(chunk), UserRow.merged_into_id.is_(None)
                )
            )
        )
    return found


def _store_users(session: Session, rows: Iterable[Any]) -> dict[int, StoreUser]:
    """`rows`: UserRow objects or plain rows with the columns of `membership.USER_COLUMNS`."""
    users = {row.id: row for row in rows}
    ids = sorted(users)
    licenses = queries.user_license_counts(session, ids)
    agents: dict[int, int] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        agents.update(
            session.execute(
                select(AgentRow.user_id, func.count(AgentRow.id))
                .where(AgentRow.user_id.in_(chunk))
                .group_by(AgentRow.user_id)
            ).all()
        )
    return {
        uid: StoreUser(
            id=uid,
            entra_object_id=row.entra_object_id,
            tracking=row.tracking,
            untracked_by=row.untracked_by,
            status=row.status,
            agents=int(agents.get(uid, 0)),
            licenses=licenses.get(uid, 0),
            last_activity_at=row.last_activity_at,
        )
        for uid, row in users.items()
    }


def _identity_rows(session: Session) -> list[tuple[str, int, int]]:
    """(object, rank, user) for unlinked records that carry a live Entra object's key."""
    live = exists().where(
        EntraUserRow.object_id == EntraKeyRow.object_id, EntraUserRow.deleted_at.is_(None)
    )
    unlinked = (
        select(EntraKeyRow.object_id, func.min(EntraKeyRow.rank), UserRow.id)
        .join(
            IdentifierRow,
            and_(IdentifierRow.kind == EntraKeyRow.kind, IdentifierRow.value == EntraKeyRow.value),
        )
        .join(UserRow, UserRow.id == IdentifierRow.user_id)
        .where(UserRow.merged_into_id.is_(None), UserRow.entra_object_id.is_(None), live)
        .group_by(EntraKeyRow.object_id, UserRow.id)
    )
    return [(o, int(r), int(u)) for o, r, u in session.execute(unlinked)]


# Above this many Entra objects changed since the last cycle (a first or a full round), the
# retirement query runs once over the store instead of once per 500 changed objects.
_CHANGED_SET_LIMIT = 20_000


def _retirements(session: Session, changed_since: datetime | None) -> list[Retirement]:
    """Identifiers of records linked to one Entra object that a *different live* object now
    holds (its UPN, mail or proxy address) while their own object no longer does, or is
    deleted. Only objects that changed since the last completed cycle are examined: they are
    found first (ix_entra_users_updated), so a cycle in which nothing changed costs one
    index probe, and one with changes costs what they cost."""
    new_user, old_user = aliased(EntraUserRow), aliased(EntraUserRow)
    query = _retirement_query(new_user, old_user)
    if changed_since is None:
        return _collect_retirements(session, [query])
    # no more ids than the limit are read: a first sync changes every object of the tenant
    changed = list(
        session.scalars(
            select(EntraUserRow.object_id)
            .where(EntraUserRow.updated_at >= changed_since)
            .limit(_CHANGED_SET_LIMIT + 1)
        )
    )
    if len(changed) > _CHANGED_SET_LIMIT:
        since = or_(new_user.updated_at >= changed_since, old_user.updated_at >= changed_since)
        return _collect_retirements(session, [query.where(since)])
    queries_: list[Any] = []
    for chunk in chunks(changed):
        queries_.append(query.where(new_user.object_id.in_(chunk)))
        queries_.append(query.where(UserRow.entra_object_id.in_(chunk)))
    return _collect_retirements(session, queries_)


def _retirement_query(new_user: Any, old_user: Any) -> Any:
    own = aliased(EntraKeyRow)
    still_own = exists().where(
        own.kind == IdentifierRow.kind,
        own.value == IdentifierRow.value,
        own.object_id == UserRow.entra_object_id,
        old_user.deleted_at.is_(None),
    )
    return (
        select(
            UserRow.id,
            IdentifierRow.kind,
            IdentifierRow.value,
            UserRow.entra_object_id,
            EntraKeyRow.object_id,
            old_user.deleted_at,
        )
        .join(IdentifierRow, IdentifierRow.user_id == UserRow.id)
        .join(
            EntraKeyRow,
            and_(EntraKeyRow.kind == IdentifierRow.kind, EntraKeyRow.value == IdentifierRow.value),
        )
        .join(new_user, new_user.object_id == EntraKeyRow.object_id)
        .join(old_user, old_user.object_id == UserRow.entra_object_id)
        .where(
            UserRow.merged_into_id.is_(None),
            IdentifierRow.kind.in_(RETIRABLE_KINDS),
            EntraKeyRow.rank <= RANK_ADDRESS,
            EntraKeyRow.object_id != UserRow.entra_object_id,
            new_user.deleted_at.is_(None),
            ~still_own,
        )
    )


def _collect_retirements(session: Session, statements: list[Any]) -> list[Retirement]:
    found: dict[tuple[int, str, str], Retirement] = {}
    for statement in statements:
        for uid, kind, value, old, new, deleted_at in session.execute(statement):
            key = (int(uid), kind, value)
            if key not in found or new < found[key].new_object:
                found[key] = Retirement(
                    int(uid), kind, value, str(old), new, deleted_at is not None
                )
    return [found[k] for k in sorted(found)]


def _scheduled(session: Session) -> list[ScheduledRecord]:
    return [
        ScheduledRecord(int(r.user_id), r.object_id, PurgeCause(r.cause), r.group_id, r.due_at)
        for r in session.scalars(select(ScheduledPurgeRow))
    ]


def total_users(session: Session) -> int:
    """Live records (merged ones folded into their survivor are not counted), from the
    maintained tally (store/tally.py)."""
    return tally.live_users(session)


@dataclass(frozen=True, slots=True)
class _WatchedRow:
    """A watched member that calls for an action, with its linked record's columns
    (`membership.USER_COLUMNS`; `id` None when there is none) and its group's `suspect` reason."""

    via_group: str
    object_id: str
    kind: str
    first_seen_at: datetime
    id: int | None
    entra_object_id: str | None
    tracking: str | None
    untracked_by: str | None
    status: str | None
    last_activity_at: datetime | None
    suspect: str | None


def _watched(session: Session, examined: list[membership.Objects]) -> list[_WatchedRow]:
    """Members that call for an action (not in the store yet, still tracked, or a Delete
    member with agents). A first sync finds most of the watched groups here, so the rows are
    read as they stream and the values they share (group, kind, states, times) are held once."""
    shared: dict[Any, Any] = {}
    once = shared.setdefault
    return [
        _WatchedRow(
            once(row.via_group, row.via_group),
            row.object_id,
            once(row.kind, row.kind),
            once(row.first_seen_at, row.first_seen_at),
            row.id,
            row.object_id if row.id is not None else None,
            once(row.tracking, row.tracking),
            once(row.untracked_by, row.untracked_by),
            once(row.status, row.status),
            row.last_activity_at,
            once(row.suspect, row.suspect),
        )
        for objects in examined
        for row in session.execute(
            membership.watched_query(objects).execution_options(yield_per=2_000)
        )
    ]


def _retrack_rows(
    session: Session, on_user_disabled: str, examined: list[membership.Objects]
) -> list[UserRow]:
    return [
        row
        for objects in examined
        for row in session.scalars(membership.retrack_query(on_user_disabled, objects, (UserRow,)))
    ]


def _deleted_pairs(session: Session, on_user_deleted: str) -> list[tuple[UserRow, datetime]]:
    """Records whose Entra account is deleted and that `on_user_deleted` still acts on."""
    if on_user_deleted == "ignore":
        return []
    out_of_line = UserRow.tracking == Tracking.TRACKED
    if on_user_deleted == "purge":
        out_of_line = or_(out_of_line, exists().where(AgentRow.user_id == UserRow.id))
    return [
        (row, cast(datetime, deleted_at))  # the WHERE clause excludes NULL
        for row, deleted_at in session.execute(
            select(UserRow, EntraUserRow.deleted_at)
            .join(EntraUserRow, EntraUserRow.object_id == UserRow.entra_object_id)
            .where(
                EntraUserRow.deleted_at.is_not(None),
                UserRow.merged_into_id.is_(None),
                out_of_line,
            )
        )
    ]


def _disabled_rows(session: Session, on_user_disabled: str) -> list[UserRow]:
    """Tracked records linked to a live Entra account read as disabled, in no watched group
    (membership decides for members)."""
    if on_user_disabled != "untrack":
        return []
    return list(
        session.scalars(
            select(UserRow)
            .join(EntraUserRow, EntraUserRow.object_id == UserRow.entra_object_id)
            .where(
                EntraUserRow.account_enabled.is_(False),
                EntraUserRow.deleted_at.is_(None),
                UserRow.tracking == Tracking.TRACKED,
                UserRow.merged_into_id.is_(None),
                ~exists().where(WatchedMemberRow.object_id == UserRow.entra_object_id),
            )
        ).all()
    )


def _member(w: _WatchedRow, users: dict[int, StoreUser]) -> WatchedMember:
    user = users[w.id] if w.id is not None else None
    return WatchedMember(
        w.object_id, GroupKind(w.kind), w.via_group, w.first_seen_at, user, w.suspect is not None
    )


def watched_members(session: Session, objects: membership.Objects) -> list[WatchedMember]:
    """The watched members among `objects` that call for an action (a batch of a plan made
    in parts, sync/batches.py)."""
    rows = _watched(session, [objects])
    users = _store_users(session, [w for w in rows if w.id is not None])
    return [_member(w, users) for w in rows]


def gather(
    session: Session,
    *,
    changed_since: datetime | None,
    sync: SyncConfig,
    examine: membership.Examine = membership.Examine.QUEUED,
    watched: bool = True,
) -> Facts:
    """Every fact a plan needs; with `watched` False, all but the watched members (a plan
    made in parts reads them batch by batch with `watched_members`)."""
    identity = _identity_rows(session)
    linked_rows = _user_rows(session, UserRow.entra_object_id, sorted({o for o, _, _ in identity}))
    examined = list(membership.examined(session, examine))  # the queue is read once
    watched_rows = _watched(session, examined) if watched else []
    retrack_rows = _retrack_rows(session, sync.on_user_disabled, examined)
    deleted_pairs = _deleted_pairs(session, sync.on_user_deleted)
    disabled_rows = _disabled_rows(session, sync.on_user_disabled)
    identity_users = _user_rows(session, UserRow.id, sorted({u for _, _, u in identity}))
    with_ids = [w for w in watched_rows if w.id is not None]
    pairs = [row for row, _ in deleted_pairs]
    everyone = _store_users(
        session, [*identity_users, *linked_rows, *with_ids, *retrack_rows, *pairs, *disabled_rows]
    )
    return Facts(
        identity_matches=[IdentityMatch(o, r, everyone[u]) for o, r, u in identity],
        linked={
            row.entra_object_id: everyone[row.id] for row in linked_rows if row.entra_object_id
        },
        watched=[_member(w, everyone) for w in watched_rows],
        retrack=[everyone[row.id] for row in retrack_rows],
        deleted=[
            (row.entra_object_id or "", deleted_at, everyone[row.id])
            for row, deleted_at in deleted_pairs
        ],
        disabled=[everyone[row.id] for row in disabled_rows],
        retirements=_retirements(session, changed_since),
        scheduled=_scheduled(session),
    )
