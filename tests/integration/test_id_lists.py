"""Lists of ids in SQL (store/id_lists.py): the same rows on both stores, each list one
parameter however long; on PostgreSQL a `bigint[]` whose values the planner sees (a purge
batch's statements are planned for the users it names, not for a guess), in statements
never prepared (store/engines.py: a generic plan outlives the table sizes it was made for);
on SQLite a JSON array whose ids probe the column's index."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, func, insert, select, text
from sqlalchemy.orm import Session

from entrasync.store.db import Store, lock_writers
from entrasync.store.driver import IdArray
from entrasync.store.id_lists import one_of
from entrasync.store.schema import UserRow

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _users(store: Store, count: int) -> list[int]:
    with store.transaction() as session:
        row = {"tracking": "tracked", "status": "active", "created_at": NOW}
        session.execute(insert(UserRow), [row] * count)
        return list(session.scalars(select(UserRow.id).order_by(UserRow.id)))


def _matching(store: Store, ids: list[int]) -> list[int]:
    with store.reading() as session:
        return sorted(session.scalars(select(UserRow.id).where(one_of(session, UserRow.id, ids))))


def test_one_of_finds_exactly_the_ids_named(store: Store) -> None:
    ids = _users(store, 1_200)
    named = [*ids[::2], 10**12, 2**62]  # some not stored
    assert _matching(store, named) == ids[::2]
    assert _matching(store, []) == []


def test_a_list_longer_than_any_parameter_limit_is_one_parameter(store: Store) -> None:
    """40,000 ids (SQLite allows 32,766 parameters, PostgreSQL 65,535) go as one."""
    ids = _users(store, 10)
    sent: list[Any] = []

    def capture(*args: Any) -> None:
        sent.append(args[3])

    event.listen(store.engine, "before_cursor_execute", capture)
    try:
        found = _matching(store, [*range(10**9, 10**9 + 40_000), ids[3]])
    finally:
        event.remove(store.engine, "before_cursor_execute", capture)
    assert found == [ids[3]]
    (params,) = [p for p in sent if p]
    assert len(params) == 1, len(params)


def test_sqlite_probes_the_index_with_the_listed_ids(store: Store) -> None:
    """The JSON array is read by `json_each` and each id looks up the primary key: no scan
    of the table (the plan an IN list of literals gets)."""
    if store.dialect != "sqlite":
        pytest.skip("json_each is SQLite's")
    ids = _users(store, 50)
    with store.reading() as session:
        query = select(UserRow.id).where(one_of(session, UserRow.id, ids[:5]))
        sql = query.compile(session.get_bind()).string
        plan = session.connection().exec_driver_sql(
            f"EXPLAIN QUERY PLAN {sql}", (json.dumps(ids[:5]),)
        )
        steps = [str(row[3]) for row in plan]
    assert any(s.startswith("SEARCH users USING INTEGER PRIMARY KEY") for s in steps), steps
    assert not any(s.startswith("SCAN users") for s in steps), steps


@pytest.mark.postgres
def test_the_planner_sees_the_ids(store: Store) -> None:
    """What `one_of` sends (captured as it leaves SQLAlchemy) is a `bigint[]` the planner
    reads: 25 ids are estimated as 25 rows."""
    if store.dialect != "postgresql":
        pytest.skip("the array parameter is PostgreSQL's")
    ids = _users(store, 2_000)
    sent: list[Any] = []

    def capture(*args: Any) -> None:
        sent.append(args[3])  # the parameters, after the bind processors

    with store.reading() as session:
        session.execute(text("ANALYZE users"))
        query = select(func.count()).where(one_of(session, UserRow.id, ids[:25]))
        event.listen(store.engine, "before_cursor_execute", capture)
        try:
            assert session.scalar(query) == 25
        finally:
            event.remove(store.engine, "before_cursor_execute", capture)
        (param,) = sent[-1].values()
        typed = session.scalar(text("SELECT pg_typeof(:p)::text"), {"p": param})
        statement = query.compile(session.get_bind()).string.replace("%(param_1)s", ":p")
        explain = text(f"EXPLAIN (FORMAT JSON) {statement}")
        plan = session.execute(explain, {"p": param}).scalar_one()
    assert isinstance(param, IdArray) and typed == "bigint[]", (type(param), typed)
    scan = plan[0]["Plan"]["Plans"][0]
    assert scan["Plan Rows"] == 25, scan


@pytest.mark.postgres
def test_a_writer_locks_before_its_transaction_begins(store: Store) -> None:
    """`lock_writers` on a session that has run nothing yet still takes the writers' lock
    (before any transaction, the transaction it remembers and the current one are both
    None)."""
    if store.dialect != "postgresql":
        pytest.skip("the advisory lock is PostgreSQL's")
    with Session(store.engine) as session:
        lock_writers(session)
        held = session.scalar(
            text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                "AND pid = pg_backend_pid() AND granted"
            )
        )
        session.rollback()
    assert held == 1


@pytest.mark.postgres
def test_no_statement_is_planned_once_for_all(store: Store) -> None:
    """psycopg prepares a statement run five times, and PostgreSQL may then keep one
    generic plan for it, made when a table was small: a first sync's mirror lookups became
    sequential scans of the whole mirror (bench/RESULTS.md, eighth round). The store's
    connections prepare nothing."""
    if store.dialect != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's")
    ids = _users(store, 20)
    with store.transaction() as session:
        for _ in range(10):
            session.scalars(select(UserRow.id).where(one_of(session, UserRow.id, ids))).all()
        prepared = session.scalar(text("SELECT count(*) FROM pg_prepared_statements"))
    assert prepared == 0
