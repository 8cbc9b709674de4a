"""Purging: a user's history and agents deleted, the record kept and Untracked (DESIGN.md,
the licensing model). One set of statements per batch of users, whatever they hold, shared by
the admin command, the pending queue's `remove` and the sync cycle (a whole Delete group).

A purge reads each user and what they hold first, in one query (`subjects`: their agent
ids, activity rows and agents holding history), for the audit record's details and the
tally's readings; the deletes then go by those agent ids. Users are plain `Subject`s, not ORM
records: a batch of 500 users loaded, tracked and expired by the ORM cost more client time
than the deletes (bench: purge). On PostgreSQL the deletes are pipelined (`purging`): the
caller builds the audit records while the server deletes.
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
from entrasync.store.driver import pipelined
from entrasync.store.id_lists import one_of
from entrasync.store.operations import Details
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
    """What a purge reads of a user record; `identifiers` (kind, value, sorted) only when
    read by `subjects`, for the audit record."""

    id: int
    tracking: str
    status: str
    merged_into_id: int | None
    identifiers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, user: UserRow) -> Subject:
        return cls(user.id, user.tracking, user.status, user.merged_into_id)

    def named_by(self) -> list[dict[str, str]]:
        """The identifiers as an audit record names the person."""
        return [{"kind": kind, "value": value} for kind, value in self.identifiers]


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


def subjects(session: Session, user_ids: Sequence[int]) -> tuple[list[Subject], Holdings]:
    """The records of `user_ids` (merged ones included), as plain subjects with their
    identifiers, and what each holds: one query (`_read`)."""
    if not user_ids:
        return [], {}
    found: list[Subject] = []
    holdings: Holdings = {}
    for uid, tracking, status, merged, agents, identifiers in session.connection().execute(
        _read(session, user_ids)
    ):
        # JSON's own types: ints and strings already
        named = tuple(sorted(map(tuple, identifiers or ())))
        found.append(Subject(uid, tracking, status, merged, named))
        if agents:
            holdings[uid] = _holding_of(agents)
    return found, holdings


def purge_user(session: Session, user: UserRow, by: UntrackedBy | str, *, apply: bool) -> Details:
    """Delete all history and agents; identifiers (logons included) stay, user is Untracked.
    A pending user leaves the queue: with no data left there is nothing to approve."""
    details = purge_users(session, [Subject.of(user)], by, apply=apply)[user.id]
    if apply:
        session.expire(user)  # changed by the UPDATE, behind the ORM's back
    return details


def purge_users(
    session: Session,
    users: Sequence[Subject],
    by: UntrackedBy | str,
    *,
    apply: bool,
    holdings: Holdings | None = None,
    now: datetime | None = None,
) -> dict[int, Details]:
    """`purge_user` for many users at once: a fixed handful of statements per batch of
    users, whatever their number. `holdings` as `purging` takes them; read here if None."""
    read = holdings is not None
    holdings = holdings if holdings is not None else purge_holdings(session, [u.id for u in users])
    if not apply:
        return {u.id: _details(u, holdings.get(u.id, NOTHING)) for u in users}
    if not read:
        tally.before(session, [u.id for u in users])
    with purging(session, {by: users}, holdings, now, counted=not read) as details:
        return details


@contextmanager
def purging(
    session: Session,
    users_by: Mapping[UntrackedBy | str, Sequence[Subject]],
    holdings: Holdings,
    now: datetime | None,
    *,
    counted: bool = False,
) -> Iterator[dict[int, Details]]:
    """Purge the users (untracked by -> users) and yield each one's details: the block
    runs while PostgreSQL executes the statements (`driver.pipelined`: a purge batch builds
    its audit records meanwhile); they are done when it ends.

    `holdings` (from `subjects`, read after `tally.lock`) also stands for the tally's reading
    before the purge (unless `tally.before` `counted` them); after it the users hold nothing
    and are as live as they were (`tally.emptied`). The statements run as plain Core ones on
    the session's connection: through the ORM each paid for bookkeeping a purge does not
    need (its DELETE fetched back every deleted key unless told not to)."""
    users = [u for group in users_by.values() for u in group]
    details = {u.id: _details(u, holdings.get(u.id, NOTHING)) for u in users}
    held = {u.id: _held(u, holdings) for u in users}
    if not counted:
        tally.known(session, held)
    tally.emptied(session, {uid: live for uid, (_, live) in held.items()})
    with pipelined(session, "the purge's deletes"):
        connection = session.connection()
        for by, group in users_by.items():
            agent_ids = [a for u in group for a in holdings.get(u.id, NOTHING).agent_ids]
            for stmt in _statements(session, agent_ids, [u.id for u in group], by, now):
                connection.execute(stmt)
        yield details


def purge_holdings(session: Session, user_ids: Sequence[int]) -> Holdings:
    """User id -> their agents, activity rows and agents holding history."""
    return subjects(session, user_ids)[1]


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
    """Each user of `user_ids` with their agents ([id, activity rows]) and identifiers
    ([kind, value]), aggregated per user: one row per user, each part found by its own index
    (users by key, agents by user, rows by agent, identifiers by user). Read as separate
    queries the rows cost more client time than the server's; joined, PostgreSQL hashed the
    agents against a scan of all of them (12 ms of a 500-user batch at 100,000 users,
    growing with the tenant; bench: purge)."""
    rows = select(func.count()).where(ActivityRow.agent_id == AgentRow.id).scalar_subquery()
    agents = select(_json_rows(AgentRow.id, rows)).where(AgentRow.user_id == UserRow.id)
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


def _holding_of(agents: Sequence[Sequence[int]]) -> Holding:
    """From the agents' [id, activity rows]."""
    agent_ids, rows, holding = [], 0, 0
    for agent_id, held in agents:
        agent_ids.append(agent_id)
        rows += held
        holding += held > 0
    return Holding(tuple(agent_ids), rows, holding)


def _statements(
    session: Session,
    agent_ids: list[int],
    user_ids: list[int],
    by: UntrackedBy | str,
    now: datetime | None,
) -> Iterator[Executable]:
    if agent_ids:
        yield delete(ActivityRow).where(one_of(session, ActivityRow.agent_id, agent_ids))
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


def _held(user: Subject, holdings: Holdings) -> tuple[int, int]:
    """(licenses, live) of `user` before its purge: its agents holding history count when it
    is active (queries.licensed_agents_query, the license rule)."""
    holding = holdings.get(user.id, NOTHING).holding
    licenses = holding if user.status == UserStatus.ACTIVE.value else 0
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
