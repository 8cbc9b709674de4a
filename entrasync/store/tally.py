"""The license tally: licenses in use and live records, kept up to date by the writers, so the
compliance tail, `status`, ingest's routing and a cycle's thresholds read two numbers instead
of counting the store (DESIGN.md, "Scale").

A writer that may change either figure names the users it touches, in its transaction:
`before(session, ids)` *before* the change (a user's status; agents gaining their first
activity row, losing their history, moving to another user or going; a user merged away),
`created(session, ids)` after inserting new records. When the transaction reads the count
(`used_licenses`, `live_users`) or commits, `settle` recounts those users only and adds the
difference to the tally row: the cost follows the change, not the store. A purge batch
passes what it knows anyway instead: `known` (the readings before: its users' state, read
after `lock`, and the agents that held history, counted by its read or its deletion) and
`emptied` (no license after, and whether live as the purge read it), so it reads nothing
again. The row is created by migration 0009 from a full count; a store without it
(bulk-loaded, or a dry run's scratch copy) is counted in full once, by the first writer that
needs it (readers count without storing).

The writers that call `before`/`created`: ingest (store/ingest.py), purge, merges of users and
agents (store/operations.py), leaving the pending queue (store/pending.py) and pre-registered
records (store/actions.py). tests/sync/test_license_tally.py compares the tally with a
full count after a mix of all of them, on both stores.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache

from sqlalchemy import BigInteger, Index, Integer, Select, bindparam, event, func, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column
from sqlalchemy.orm.attributes import set_committed_value

from entrasync.store import queries
from entrasync.store.driver import on_postgresql
from entrasync.store.id_lists import one_of_bound
from entrasync.store.schema import Base, EntraMemberRow, EntraUserRow, UserRow

_KEY = "entrasync.license_tally"


class LicenseTallyRow(Base):
    """One row (id 1): licenses in use (queries.licensed_agents_query) and live records
    (not merged away). Kept apart from schema.py, which is at its size limit."""

    __tablename__ = "license_tally"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    used: Mapped[int] = mapped_column(BigInteger)
    live_users: Mapped[int] = mapped_column(BigInteger)


# Indexes a cycle's discrepancy queries start from (migration 0009): Entra objects changed
# since the last cycle, deleted ones, disabled ones (each holds what changed, not the
# tenant); records by tracking state (the re-tracking query reads the untracked ones only).
Index("ix_entra_users_updated", EntraUserRow.updated_at)
Index("ix_users_tracking", UserRow.tracking, UserRow.untracked_by)
# Merged records only (what was merged into one; migration 0010): a live-records lookup
# (`merged_into_id IS NULL AND … IN (ids)`) must not read it whole on SQLite.
Index(
    "ix_users_merged_into",
    UserRow.merged_into_id,
    sqlite_where=UserRow.merged_into_id.is_not(None),
    postgresql_where=UserRow.merged_into_id.is_not(None),
)
# The nesting edges of the watched groups (which child groups a cycle reads), not every member.
Index(
    "ix_entra_members_type",
    EntraMemberRow.member_type,
    EntraMemberRow.group_id,
    EntraMemberRow.member_id,
)
Index(
    "ix_entra_users_deleted",
    EntraUserRow.deleted_at,
    sqlite_where=EntraUserRow.deleted_at.is_not(None),
    postgresql_where=EntraUserRow.deleted_at.is_not(None),
)
Index(
    "ix_entra_users_disabled",
    EntraUserRow.account_enabled,
    sqlite_where=EntraUserRow.account_enabled.is_(False),
    postgresql_where=EntraUserRow.account_enabled.is_(False),
)


@dataclass
class _Watch:
    """The users a transaction touches: licenses held and live (0/1) before the change."""

    licenses: dict[int, int] = field(default_factory=dict)
    live: dict[int, int] = field(default_factory=dict)
    # Known to hold no license now -> live (0/1) as read at that point: a purge removes
    # every agent and leaves the record as it was.
    emptied: dict[int, int] = field(default_factory=dict)


def _watch(session: Session) -> _Watch:
    """This transaction's watch; the first call takes the writers' lock (PostgreSQL's
    advisory lock; SQLite's BEGIN IMMEDIATE holds it already), so the readings taken before
    a change and the update of the row are not interleaved with another writer's."""
    watch = session.info.get(_KEY)
    if watch is None:
        from entrasync.store.db import lock_writers  # db builds on the unit of work

        lock_writers(session)
        watch = session.info[_KEY] = _Watch()
    return watch


def before(session: Session, user_ids: Iterable[int]) -> None:
    """Call before changing what these users hold (a user already named keeps its first
    reading: the transaction's changes are measured from its start)."""
    watch = _watch(session)
    named = {int(u) for u in user_ids}
    for uid in named:  # changed again: counted at the end, whatever a purge said
        watch.emptied.pop(uid, None)
    new = sorted(named - watch.licenses.keys())
    if not new:
        return
    licenses, live = _counts(session, new)
    for uid in new:
        watch.licenses[uid] = licenses.get(uid, 0)
        watch.live[uid] = 1 if uid in live else 0


def lock(session: Session) -> None:
    """Take the writers' lock now: readings taken after it (say, a purge's counts) can stand
    for `before`'s, passed to `known`."""
    _watch(session)


def known(session: Session, readings: Mapping[int, tuple[int, int]]) -> None:
    """`before` from readings the caller took after `lock` in this transaction: user id ->
    (licenses held, 1 if live else 0). Saves counting what the caller counted already."""
    watch = _watch(session)
    for uid, (licenses, live) in readings.items():
        watch.licenses.setdefault(int(uid), licenses)
        watch.live.setdefault(int(uid), live)


def emptied(session: Session, live: Mapping[int, int]) -> None:
    """These users hold no license now (a purge removed every agent they had) and are live
    or not as `live` says (user id -> 1 if live, read by the caller after `lock`): `settle`
    takes that instead of counting them. A later `before` or `created` for one of them in
    the same transaction undoes this."""
    _watch(session).emptied.update({int(u): int(v) for u, v in live.items()})


def created(session: Session, user_ids: Iterable[int]) -> None:
    """Records this transaction inserted: they held nothing and did not exist before."""
    watch = _watch(session)
    for uid in user_ids:
        watch.emptied.pop(int(uid), None)
        watch.licenses.setdefault(int(uid), 0)
        watch.live.setdefault(int(uid), 0)


def _counts(session: Session, user_ids: list[int]) -> tuple[dict[int, int], set[int]]:
    return queries.user_license_counts(session, user_ids), _live(session, user_ids)


def _live(session: Session, user_ids: list[int]) -> set[int]:
    if not user_ids:
        return set()
    statement = _live_of(postgresql=on_postgresql(session))
    return set(session.scalars(statement, {"users": list(user_ids)}))


@cache
def _live_of(*, postgresql: bool) -> Select[int]:
    """`_live`'s statement, built once (as `queries.user_license_counts`': every action
    that changes what a user holds runs both)."""
    return select(UserRow.id).where(
        one_of_bound(postgresql, UserRow.id, "users"), UserRow.merged_into_id.is_(None)
    )


def settle(session: Session) -> LicenseTallyRow | None:
    """Fold the touched users' changes into the tally row (created from a full count when
    the store has none). Returns the row; None on a session that cannot write (a reader
    of a store without the row)."""
    watch: _Watch | None = session.info.pop(_KEY, None)
    row = session.get(LicenseTallyRow, 1)
    if row is None:
        if watch is None:
            return None
        return recount(session)
    if watch is None or not watch.licenses:
        return row
    ids = sorted(watch.licenses)
    counted = sorted(watch.licenses.keys() - watch.emptied.keys())
    licenses = queries.user_license_counts(session, counted)
    live = _live(session, counted) | {u for u, v in watch.emptied.items() if v}
    used = sum(licenses.get(u, 0) for u in ids) - sum(watch.licenses.values())
    lives = sum(1 for u in ids if u in live) - sum(watch.live.values())
    if used or lives:
        now_used, now_live = session.execute(
            _ADD, {"used": used, "lives": lives}, execution_options={"synchronize_session": False}
        ).one()
        set_committed_value(row, "used", now_used)  # as stored, without reading it again
        set_committed_value(row, "live_users", now_live)
    return row


# Built once: every transaction that changes what users hold runs it.
_ADD = (
    update(LicenseTallyRow)
    .where(LicenseTallyRow.id == 1)
    .values(
        used=LicenseTallyRow.used + bindparam("used", type_=BigInteger),
        live_users=LicenseTallyRow.live_users + bindparam("lives", type_=BigInteger),
    )
    .returning(LicenseTallyRow.used, LicenseTallyRow.live_users)
)


def recount(session: Session) -> LicenseTallyRow:
    """Count both figures over the whole store and store them (a store loaded in bulk, or
    one whose tally a repair must reset). O(store): not for a cycle's path."""
    session.info.pop(_KEY, None)
    used, live = full_counts(session)
    row = session.get(LicenseTallyRow, 1)
    if row is None:
        row = LicenseTallyRow(id=1, used=used, live_users=live)
        session.add(row)
    else:
        row.used, row.live_users = used, live
    session.flush()
    return row


def full_counts(session: Session) -> tuple[int, int]:
    """(licenses in use, live records) counted over the whole store."""
    used = int(session.scalar(queries.licensed_agents_query()) or 0)
    live = session.scalar(select(func.count(UserRow.id)).where(UserRow.merged_into_id.is_(None)))
    return used, int(live or 0)


def maintained_and_counted(session: Session) -> tuple[tuple[int, int] | None, tuple[int, int]]:
    """The tally row's figures (None when the store has none) and `full_counts`, read by one
    statement: one snapshot even under PostgreSQL's READ COMMITTED, so a writer committing
    meanwhile cannot make them look different (`entrasync db check-tally`)."""
    one = LicenseTallyRow.id == 1
    row = session.execute(
        select(
            select(LicenseTallyRow.used).where(one).scalar_subquery(),
            select(LicenseTallyRow.live_users).where(one).scalar_subquery(),
            queries.licensed_agents_query().scalar_subquery(),
            select(func.count(UserRow.id))
            .where(UserRow.merged_into_id.is_(None))
            .scalar_subquery(),
        )
    ).one()
    kept_used, kept_live, used, live = row
    maintained = None if kept_used is None else (int(kept_used), int(kept_live))
    return maintained, (int(used or 0), int(live or 0))


def used_licenses(session: Session) -> int:
    row = settle(session)
    return row.used if row is not None else full_counts(session)[0]


def live_users(session: Session) -> int:
    row = settle(session)
    return row.live_users if row is not None else full_counts(session)[1]


@event.listens_for(Session, "before_commit")
def _settle_on_commit(session: Session) -> None:
    if session.info.get(_KEY) is not None:
        settle(session)


@event.listens_for(Session, "after_rollback")
def _forget_on_rollback(session: Session) -> None:
    session.info.pop(_KEY, None)
