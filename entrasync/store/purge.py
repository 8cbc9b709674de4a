"""Purging: a user's history and agents deleted, the record kept and Untracked (DESIGN.md,
the licensing model). One set of statements per batch of users, whatever they hold, shared by
the admin command, the pending queue's `remove` and the sync cycle (a whole Delete group).

A purge reads each user first, in one query (`subjects`: their state, agent ids and
identifiers, and on SQLite each agent's activity rows), then deletes their history by those
agent ids (`_delete_history`; PostgreSQL counts the rows as it deletes them): the audit
record's details and the tally's readings come from that count. Users are plain
`Subject`s, not ORM records: a batch of 500 users loaded, tracked and expired by the ORM cost
more client time than the deletes (bench: purge). The statements are built once (`_sql`) and
run while the caller builds the audit records (`purging`, `driver.pipelined`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any, NamedTuple

from sqlalchemy import (
    JSON,
    ColumnElement,
    Delete,
    Select,
    String,
    Update,
    bindparam,
    case,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.sql.functions import FunctionElement

from entrasync.domain.status import Tracking, UntrackedBy, UserStatus
from entrasync.store import tally
from entrasync.store.driver import Statement, on_postgresql, pipelined
from entrasync.store.id_lists import one_of, one_of_bound
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


class Subject(NamedTuple):
    """What a purge reads of a user record (`subjects`): its state, its agents, and its
    identifiers as the audit record names the person (`queries.named`). On SQLite also
    each agent's activity rows (`rows`, in the order of `agent_ids`): counted through the
    index the purge's DELETE walks next; PostgreSQL counts as it deletes
    (`_delete_history`). A tuple: a batch reads 500 of them."""

    id: int
    tracking: str
    status: str
    merged_into_id: int | None
    identifiers: list[dict[str, str]]
    agent_ids: tuple[int, ...]
    rows: tuple[int, ...] | None


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
    (`_read`), answered as one JSON document. Read after `tally.lock` when they are purged
    next (`purging`)."""
    if not user_ids:
        return []
    session.flush()  # read what the session changed too
    postgresql = on_postgresql(session)
    read = session.connection().execute(_read(postgresql=postgresql), {"users": user_ids})
    # JSON's own types, ints and strings, already; none: NULL (PostgreSQL) or [] (SQLite)
    return [
        Subject(
            uid,
            tracking,
            status,
            merged,
            named(pairs or ()),
            tuple(agent[0] for agent in agents or ()),
            None if postgresql else tuple(rows for _, rows in agents or ()),
        )
        for uid, tracking, status, merged, agents, pairs in read.scalar_one() or ()
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
        users = subjects(session, user_ids)
        held = _would_remove(session, users)
        return {u.id: _details(u, held.get(u.id, NOTHING)) for u in users}
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
    yield each one's details. What each agent held is known first (PostgreSQL deletes the
    history to count it; SQLite counted it in `subjects`); the block then runs while the
    database executes the other statements (`driver.pipelined`: PostgreSQL's pipeline, or a
    worker thread on SQLite; a purge batch builds its audit records meanwhile, and must not
    use the session); they are done when it ends.

    What was counted also stands for the tally's reading before the purge (`tally.known`);
    after it the users hold nothing and are as live as they were (`tally.emptied`). The
    statements run as plain Core ones on the session's connection: through the ORM each paid
    for bookkeeping a purge does not need (its DELETE fetched back every deleted key unless
    told not to)."""
    users = [u for group in users_by.values() for u in group]
    session.flush()  # pending ORM changes reach the database before the purge's statements
    deleted, statements = _delete_history(session, users)
    for by, group in users_by.items():
        agent_ids = [a for u in group for a in u.agent_ids]
        statements += _statements(session, agent_ids, [u.id for u in group], by, now)
    with pipelined(session, "the purge's deletes", statements):
        holdings = {u.id: _holding_of(u.agent_ids, deleted) for u in users}
        held = {u.id: _held(u, holdings[u.id]) for u in users}
        yield {u.id: _details(u, holdings[u.id]) for u in users}
    tally.known(session, held)
    tally.emptied(session, {uid: live for uid, (_, live) in held.items()})


def purge_holdings(session: Session, user_ids: Sequence[int]) -> Holdings:
    """User id -> their agents, activity rows and agents holding history, counted (what a
    purge would remove; a purge itself learns it from its read (SQLite) or its
    deletion (PostgreSQL): `_delete_history`)."""
    if not user_ids:
        return {}
    per_user: dict[int, list[tuple[int, int]]] = {}
    for uid, aid, rows in session.connection().execute(_counted(session, user_ids)):
        per_user.setdefault(uid, []).append((aid, rows))
    return {
        uid: _holding_of(tuple(a for a, _ in agents), dict(agents))
        for uid, agents in per_user.items()
    }


def _would_remove(session: Session, users: Sequence[Subject]) -> Holdings:
    """What purging `users` would remove: on SQLite `subjects` counted it already (a heavy
    user's rows were counted twice before), PostgreSQL counts now (`purge_holdings`)."""
    if on_postgresql(session):
        return purge_holdings(session, [u.id for u in users])
    counted = _counted_by_agent(users)
    return {u.id: _holding_of(u.agent_ids, counted) for u in users if u.agent_ids}


def _delete_history(
    session: Session, users: Sequence[Subject]
) -> tuple[dict[int, int], list[Statement]]:
    """The users' activity rows counted, agent id -> rows (agents without any are absent),
    and what is left to run to delete them. On PostgreSQL the deletion counts them (a
    data-modifying WITH), nothing is left: counted beforehand, PostgreSQL read another of
    the table's indexes for it (`uq_activity_event`, ten times the size of the one the
    DELETE walks; bench: purge). On SQLite `subjects` counted them, through the index the
    DELETE walks, and the DELETE runs with the purge's other statements
    (`driver.pipelined`): SQLite would hold every RETURNING row in memory (a batch of heavy
    users is millions of rows)."""
    agent_ids = [a for u in users for a in u.agent_ids]
    if not agent_ids:
        return {}, []
    if not on_postgresql(session):
        return _counted_by_agent(users), [(_sql(postgresql=False).history, {"agents": agent_ids})]
    gone = _sql(postgresql=True).history.returning(ActivityRow.agent_id).cte("gone")
    counted = select(gone.c.agent_id, func.count()).group_by(gone.c.agent_id)
    return dict(session.connection().execute(counted, {"agents": agent_ids}).all()), []


def _counted_by_agent(users: Sequence[Subject]) -> dict[int, int]:
    """Agent id -> activity rows as `subjects` counted them on SQLite (none: absent)."""
    per_user = (zip(u.agent_ids, _counted_rows(u), strict=True) for u in users)
    return {agent: rows for agents in per_user for agent, rows in agents if rows}


def _counted_rows(user: Subject) -> tuple[int, ...]:
    if user.rows is None:
        raise RuntimeError(f"user {user.id} was read without counting (a bug)")
    return user.rows


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


class _json_value(FunctionElement[Any]):
    """A subquery's JSON as a value inside another JSON value: SQLite hands a subquery's
    JSON on as text (`json(…)` makes it JSON again), PostgreSQL as json."""

    type = JSON()
    inherit_cache = True
    name = "json_value"


@compiles(_json_value, "postgresql")
def _json_value_postgresql(element: _json_value, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.clauses, **kw))


@compiles(_json_value)
def _json_value_sqlite(element: _json_value, compiler: Any, **kw: Any) -> str:
    return f"json({compiler.process(element.clauses, **kw)})"


@cache
def _read(*, postgresql: bool) -> Select[Any]:
    """Each user of the parameter `users` with their agents ([id]; on SQLite [id, activity
    rows]) and identifiers ([kind, value]), aggregated per user, all
    in one JSON array of [id, tracking, status, merged into, agents, identifiers]. Each
    part is found by its own index (users by key, agents by user, identifiers by user, rows
    by agent). Read as separate queries the rows cost more client time than the server's,
    and so did a row per user (two JSON values each, parsed apart); joined, PostgreSQL
    hashed the agents against a scan of all of them (12 ms of a 500-user batch at 100,000
    users, growing with the tenant; bench: purge). Built once (`one_of_bound`)."""
    rows = select(func.count()).where(ActivityRow.agent_id == AgentRow.id).scalar_subquery()
    agent = (AgentRow.id,) if postgresql else (AgentRow.id, rows)
    agents = select(_json_rows(*agent)).where(AgentRow.user_id == UserRow.id)
    identifiers = select(_json_rows(IdentifierRow.kind, IdentifierRow.value)).where(
        IdentifierRow.user_id == UserRow.id
    )
    return select(
        _json_rows(
            UserRow.id,
            UserRow.tracking,
            UserRow.status,
            UserRow.merged_into_id,
            _json_value(agents.scalar_subquery()),
            _json_value(identifiers.scalar_subquery()),
        )
    ).where(one_of_bound(postgresql, UserRow.id, "users"))


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
) -> Iterator[Statement]:
    sql = _sql(postgresql=on_postgresql(session))
    if agent_ids:  # after their history (`_delete_history`)
        yield sql.logons, {"agents": agent_ids}
        yield sql.agents, {"agents": agent_ids}
    if user_ids:
        users = {"users": user_ids}
        yield sql.untrack, {**users, "by": str(UntrackedBy(by)), "now": now or datetime.now(UTC)}
        yield sql.activate, users
        yield sql.unschedule, users


@dataclass(frozen=True)
class _Statements:
    """A purge's statements, built once per kind of store (`_sql`) and run with the
    batch's parameters: `agents` and `users` (id lists), `by`, `now`."""

    history: Delete
    logons: Delete
    agents: Delete
    untrack: Update
    activate: Update
    unschedule: Delete


@cache
def _sql(*, postgresql: bool) -> _Statements:
    def agents(column: InstrumentedAttribute[int]) -> ColumnElement[bool]:
        return one_of_bound(postgresql, column, "agents")

    users = one_of_bound(postgresql, UserRow.id, "users")
    return _Statements(
        history=delete(ActivityRow).where(agents(ActivityRow.agent_id)),
        logons=delete(AgentLogonRow).where(agents(AgentLogonRow.agent_id)),
        agents=delete(AgentRow).where(agents(AgentRow.id)),
        untrack=update(UserRow)
        .where(users)
        .values(
            # An earlier untracking keeps its author: an admin's decision outlives a purge.
            untracked_by=case(
                (UserRow.tracking != Tracking.UNTRACKED.value, bindparam("by", type_=String)),
                else_=UserRow.untracked_by,
            ),
            tracking=Tracking.UNTRACKED.value,
            purged_at=bindparam("now", type_=UserRow.purged_at.type),
        ),
        # Apart, for the few pending users only: naming `status` in every user's SET made
        # SQLite rewrite each one's `ix_users_status` entry, unchanged (bench: purge).
        activate=update(UserRow)
        .where(
            users,
            or_(UserRow.status != UserStatus.ACTIVE.value, UserRow.pending_since.is_not(None)),
        )
        .values(status=UserStatus.ACTIVE.value, pending_since=None),
        # A purge already done needs no scheduling any more.
        unschedule=delete(ScheduledPurgeRow).where(
            one_of_bound(postgresql, ScheduledPurgeRow.user_id, "users")
        ),
    )


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
