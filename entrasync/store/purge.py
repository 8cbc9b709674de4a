"""Purging: a user's history and agents deleted, the record kept and Untracked (DESIGN.md,
the licensing model). One set of statements per batch of users, whatever they hold, shared by
the admin command, the pending queue's `remove` and the sync cycle (a whole Delete group).

A purge reads each user first, in one query (`subjects`: their state, agent ids and
identifiers), then deletes their history by those agent ids, counting the rows each agent
held as it deletes them (`_delete_history`): the audit record's details and the tally's
readings come from that count. Users are plain
`Subject`s, not ORM records: a batch of 500 users loaded, tracked and expired by the ORM cost
more client time than the deletes (bench: purge). On PostgreSQL the statements after the
history's are pipelined (`purging`): the caller builds the audit records meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Select, case, delete, func, or_, select, update
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import Executable
from sqlalchemy.sql.functions import FunctionElement

from entrasync.domain.status import Tracking, UntrackedBy, UserStatus
from entrasync.store import tally
from entrasync.store.driver import on_postgresql, pipelined
from entrasync.store.id_lists import one_of
from entrasync.store.operations import Details
from entrasync.store.queries import named
from entrasync.store.schema import (
    ActivityRow,
    AgentLogonRow,
    AgentRow,
    IdentifierRow,
    ScheduledPurgeRow,
    UserRow,
)


@dataclass(frozen=True)
class Subject:
    """What a purge reads of a user record (`subjects`): its state, its agents, and its
    identifiers as the audit record names the person (`queries.named`)."""

    id: int
    tracking: str
    status: str
    merged_into_id: int | None
    identifiers: list[dict[str, str]]
    agent_ids: tuple[int, ...]


@dataclass(frozen=True)
class Holding:
    """What a purge removes from one user: their agents and activity rows."""

    agent_ids: tuple[int, ...]
    rows: int
    holding: int  # agents holding history: licenses, when the user is active

    @property
    def agents(self) -> int:
        return len(self.agent_ids)


NOTHING = Holding((), 0, 0)
Holdings = dict[int, Holding]  # user id -> what they hold; users without agents are absent


def subjects(session: Session, user_ids: Sequence[int]) -> list[Subject]:
    """The records of `user_ids` (merged ones included) as plain subjects: one query
    (`_read`). Read after `tally.lock` when they are purged next (`purging`)."""
    if not user_ids:
        return []
    session.flush()  # read what the session changed too
    return [
        # JSON's own types, ints and strings, already; none: NULL (PostgreSQL) or [] (SQLite)
        Subject(
            uid, tracking, status, merged, named(pairs or ()), tuple(a for (a,) in agents or ())
        )
        for uid, tracking, status, merged, agents, pairs in session.connection().execute(
            _read(session, user_ids)
        )
    ]


def purge_user(session: Session, user: UserRow, by: UntrackedBy | str, *, apply: bool) -> Details:
    """Delete all history and agents; identifiers (logons included) stay, user is Untracked.
    A pending user leaves the queue: with no data left there is nothing to approve."""
    details = purge_users(session, [user.id], by, apply=apply)[user.id]
    if apply:
        session.expire(user)  # changed by the UPDATE, behind the ORM's back
    return details


def purge_users(
    session: Session,
    user_ids: Sequence[int],
    by: UntrackedBy | str,
    *,
    apply: bool,
    now: datetime | None = None,
) -> dict[int, Details]:
    """`purge_user` for many users at once: a fixed handful of statements per batch of
    users, whatever their number. Without `apply`, what a purge would remove (counted)."""
    if not apply:
        held = purge_holdings(session, user_ids)
        return {u.id: _details(u, held.get(u.id, NOTHING)) for u in subjects(session, user_ids)}
    tally.lock(session)
    with purging(session, {by: subjects(session, user_ids)}, now) as details:
        return details


@contextmanager
def purging(
    session: Session,
    users_by: Mapping[UntrackedBy | str, Sequence[Subject]],
    now: datetime | None,
) -> Iterator[dict[int, Details]]:
    """Purge the users (untracked by -> users, read by `subjects` after `tally.lock`) and
    yield each one's details. Their history is deleted first, and the deletion says what
    each agent held; the block then runs while PostgreSQL executes the other statements
    (`driver.pipelined`: a purge batch builds its audit records meanwhile); they are done
    when it ends.

    What was deleted also stands for the tally's reading before the purge (`tally.known`);
    after it the users hold nothing and are as live as they were (`tally.emptied`). The
    statements run as plain Core ones on the session's connection: through the ORM each paid
    for bookkeeping a purge does not need (its DELETE fetched back every deleted key unless
    told not to)."""
    users = [u for group in users_by.values() for u in group]
    session.flush()  # pending ORM changes reach the database before the purge's statements
    deleted = _delete_history(session, [a for u in users for a in u.agent_ids])
    holdings = {u.id: _holding_of(u.agent_ids, deleted) for u in users}
    details = {u.id: _details(u, holdings[u.id]) for u in users}
    held = {u.id: _held(u, holdings[u.id]) for u in users}
    tally.known(session, held)
    tally.emptied(session, {uid: live for uid, (_, live) in held.items()})
    with pipelined(session, "the purge's deletes"):
        connection = session.connection()
        for by, group in users_by.items():
            agent_ids = [a for u in group for a in u.agent_ids]
            for stmt in _statements(session, agent_ids, [u.id for u in group], by, now):
                connection.execute(stmt)
        yield details


def purge_holdings(session: Session, user_ids: Sequence[int]) -> Holdings:
    """User id -> their agents, activity rows and agents holding history, counted (what a
    purge would remove; a purge itself learns it from the deletion)."""
    if not user_ids:
        return {}
    per_user: dict[int, list[tuple[int, int]]] = {}
    for uid, aid, rows in session.connection().execute(_counted(session, user_ids)):
        per_user.setdefault(uid, []).append((aid, rows))
    return {
        uid: _holding_of(tuple(a for a, _ in agents), dict(agents))
        for uid, agents in per_user.items()
    }


def _delete_history(session: Session, agent_ids: Sequence[int]) -> dict[int, int]:
    """Delete the agents' activity rows: agent id -> rows deleted (agents without any are
    absent). On PostgreSQL the deletion counts them (a data-modifying WITH): counted
    beforehand, PostgreSQL read another of the table's indexes for it (`uq_activity_event`,
    ten times the size of the one the DELETE walks; bench: purge). SQLite counts first,
    through the index the DELETE walks next: it would hold every RETURNING row in memory
    (a batch of heavy users is millions of rows)."""
    if not agent_ids:
        return {}
    connection = session.connection()
    listed = one_of(session, ActivityRow.agent_id, agent_ids)
    if not on_postgresql(session):
        counted = select(ActivityRow.agent_id, func.count()).where(listed)
        held = dict(connection.execute(counted.group_by(ActivityRow.agent_id)).all())
        connection.execute(delete(ActivityRow).where(listed))
        return held
    gone = delete(ActivityRow).where(listed).returning(ActivityRow.agent_id).cte("gone")
    counted = select(gone.c.agent_id, func.count()).group_by(gone.c.agent_id)
    return dict(connection.execute(counted).all())


class _json_rows(FunctionElement[Any]):
    """The aggregate's rows as one JSON array of arrays: `json_agg(json_build_array(…))` on
    PostgreSQL, `json_group_array(json_array(…))` on SQLite; NULL or `[]` for none."""

    type = JSON()
    inherit_cache = True
    name = "json_rows"


@compiles(_json_rows, "postgresql")
def _json_rows_postgresql(element: _json_rows, compiler: Any, **kw: Any) -> str:
    return f"json_agg(json_build_array({compiler.process(element.clauses, **kw)}))"


@compiles(_json_rows)
def _json_rows_sqlite(element: _json_rows, compiler: Any, **kw: Any) -> str:
    return f"json_group_array(json_array({compiler.process(element.clauses, **kw)}))"


def _read(session: Session, user_ids: Sequence[int]) -> Select[Any]:
    """Each user of `user_ids` with their agents ([id]) and identifiers ([kind, value]),
    aggregated per user: one row per user, each part found by its own index (users by key,
    agents by user, identifiers by user). Read as separate queries the rows cost more client
    time than the server's; joined, PostgreSQL hashed the agents against a scan of all of
    them (12 ms of a 500-user batch at 100,000 users, growing with the tenant; bench:
    purge)."""
    agents = select(_json_rows(AgentRow.id)).where(AgentRow.user_id == UserRow.id)
    identifiers = select(_json_rows(IdentifierRow.kind, IdentifierRow.value)).where(
        IdentifierRow.user_id == UserRow.id
    )
    return select(
        UserRow.id,
        UserRow.tracking,
        UserRow.status,
        UserRow.merged_into_id,
        agents.scalar_subquery(),
        identifiers.scalar_subquery(),
    ).where(one_of(session, UserRow.id, user_ids))


def _counted(session: Session, user_ids: Sequence[int]) -> Select[int, int, int]:
    """The agents of `user_ids`, each with its activity rows (found by the user's index)."""
    rows = select(func.count()).where(ActivityRow.agent_id == AgentRow.id).scalar_subquery()
    return select(AgentRow.user_id, AgentRow.id, rows).where(
        one_of(session, AgentRow.user_id, user_ids)
    )


def _holding_of(agent_ids: tuple[int, ...], deleted: Mapping[int, int]) -> Holding:
    """What `agent_ids` held, by agent id -> activity rows (none: absent)."""
    rows = [deleted.get(agent_id, 0) for agent_id in agent_ids]
    return Holding(agent_ids, sum(rows), sum(1 for held in rows if held))


def _statements(
    session: Session,
    agent_ids: list[int],
    user_ids: list[int],
    by: UntrackedBy | str,
    now: datetime | None,
) -> Iterator[Executable]:
    if agent_ids:  # their history is gone already (`_delete_history`)
        yield delete(AgentLogonRow).where(one_of(session, AgentLogonRow.agent_id, agent_ids))
        yield delete(AgentRow).where(one_of(session, AgentRow.id, agent_ids))
    if user_ids:
        yield (
            update(UserRow)
            .where(one_of(session, UserRow.id, user_ids))
            .values(
                # An earlier untracking keeps its author: an admin's decision outlives a purge.
                untracked_by=case(
                    (UserRow.tracking != Tracking.UNTRACKED.value, str(UntrackedBy(by))),
                    else_=UserRow.untracked_by,
                ),
                tracking=Tracking.UNTRACKED.value,
                purged_at=now or datetime.now(UTC),
            )
        )
        # Apart, for the few pending users only: naming `status` in every user's SET made
        # SQLite rewrite each one's `ix_users_status` entry, unchanged (bench: purge).
        yield (
            update(UserRow)
            .where(
                one_of(session, UserRow.id, user_ids),
                or_(UserRow.status != UserStatus.ACTIVE.value, UserRow.pending_since.is_not(None)),
            )
            .values(status=UserStatus.ACTIVE.value, pending_since=None)
        )
        # A purge already done needs no scheduling any more.
        yield delete(ScheduledPurgeRow).where(one_of(session, ScheduledPurgeRow.user_id, user_ids))


def _held(user: Subject, held: Holding) -> tuple[int, int]:
    """(licenses, live) of `user` before its purge: its agents holding history count when it
    is active (queries.licensed_agents_query, the license rule)."""
    licenses = held.holding if user.status == UserStatus.ACTIVE.value else 0
    return licenses, 1 if user.merged_into_id is None else 0


def _details(user: Subject, held: Holding) -> Details:
    return {
        "rows_purged": held.rows,
        "agents_removed": held.agents,
        # Agents holding history are licenses, except a pending user's (none held yet).
        "licenses_freed": held.holding if user.status == UserStatus.ACTIVE else 0,
        "before": {"tracking": user.tracking, "status": user.status},
        "after": {"tracking": Tracking.UNTRACKED.value, "status": UserStatus.ACTIVE.value},
    }
