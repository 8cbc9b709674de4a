"""Writes that go through a raw driver cursor (PostgreSQL's COPY: the audit records, an
ingest's activity rows) or run while the client works (`driver.pipelined`, a purge batch's
deletes: psycopg's pipeline mode, a thread on SQLite) fail as SQLAlchemy's own statements
fail (store/driver.py): a refused write is exit 78, a lost server exit 69, a constraint an
`IntegrityError`, never a bare driver error taken for a bug (exit 70)."""

from __future__ import annotations

import signal
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError

from entrasync.domain.audit import GENESIS, AuditEvent
from entrasync.errors import ConfigError, StoreUnavailable
from entrasync.services.audit_review import verify
from entrasync.store import audit, driver
from entrasync.store.db import Store
from entrasync.store.errors import STORE_ERRORS

NOW = datetime(2026, 6, 1, tzinfo=UTC)
_DELETE: driver.Statement = (text("DELETE FROM scheduled_purges"), {})


def _read_only(store: Store) -> Any:
    if store.dialect == "postgresql":
        return text("SET TRANSACTION READ ONLY")
    return text("PRAGMA query_only = ON")


def test_an_audit_record_the_store_refuses_is_a_refused_write(store: Store) -> None:
    """A unit of work whose first write is its audit record (a `purge.unconfirmed`, say), on
    a transaction that may not write."""
    with (
        pytest.raises(ConfigError, match="refused a write"),
        store.unit_of_work(NOW, actor="entrasync") as uow,
    ):
        uow.session.execute(_read_only(store))
        uow.audit(AuditEvent("merge.skipped", "only an audit record"))


def _record() -> audit.Sealed:
    """A record as a purge batch builds it (with the row `_insert` writes)."""
    chain = audit.Chain(0, GENESIS, "entrasync", "2026-06-01T00:00:00.000000Z", None)
    return chain.records([AuditEvent("merge.skipped", "twice")])[0]


def test_a_duplicate_audit_record_is_an_integrity_error(store: Store) -> None:
    record = _record()
    with pytest.raises(IntegrityError) as caught, store.transaction() as session:
        audit._insert(session, [record, record])
    assert isinstance(caught.value, STORE_ERRORS)


@pytest.mark.postgres
def test_a_server_lost_before_a_copy_is_unreachable(store: Store) -> None:
    """The server ends the session just before the COPY: exit 69, and the pool forgets the
    dead connection, so the next unit of work writes."""
    if store.dialect != "postgresql":
        pytest.skip("COPY is PostgreSQL's")
    other = create_engine(store.url)
    try:
        with pytest.raises(StoreUnavailable), store.transaction() as session:
            pid = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
            with other.begin() as conn:
                conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
            audit._insert(session, [_record()])
    finally:
        other.dispose()
    with store.unit_of_work(NOW, actor="entrasync") as uow:
        uow.audit(AuditEvent("merge.skipped", "the server is back"))
    assert verify(store).problem is None


def test_a_refused_statement_in_a_pipeline_is_a_refused_write(store: Store) -> None:
    """Statements run while the block runs (`driver.pipelined`, a purge batch's deletes)
    fail as SQLAlchemy's do when the block ends."""
    with (
        pytest.raises(ConfigError, match="refused a write"),
        store.unit_of_work(NOW, actor="entrasync") as uow,
    ):
        uow.session.execute(_read_only(store))
        with driver.pipelined(uow.session, "the test's delete", [_DELETE]):
            pass


def test_a_constraint_broken_in_a_pipeline_is_an_integrity_error(store: Store) -> None:
    insert = text(
        "INSERT INTO users (id, tracking, status, created_at) "
        "VALUES (1, 'tracked', 'active', '2026-06-01')"
    )
    reached = []
    with pytest.raises(IntegrityError), store.transaction() as session:
        session.execute(insert)
        with driver.pipelined(session, "the test's insert", [(insert, {})]):
            reached.append(True)  # the block's work, while the database runs the insert
    assert reached == [True]


def test_a_block_failing_while_its_statements_run_leaves_nothing_behind(store: Store) -> None:
    """The block's error wins over the statements', and they are done (SQLite: the worker
    thread has finished) before the transaction rolls back: nothing they wrote remains, and
    the connection serves the next transaction."""
    insert = text(
        "INSERT INTO users (id, tracking, status, created_at) "
        "VALUES (7, 'tracked', 'active', '2026-06-01')"
    )
    with (
        pytest.raises(RuntimeError, match="the block failed"),
        store.transaction() as session,
        driver.pipelined(session, "the test's insert", [(insert, {}), _DELETE]),
    ):
        raise RuntimeError("the block failed")
    with store.transaction() as session:
        assert session.execute(text("SELECT count(*) FROM users")).scalar_one() == 0
        session.execute(insert)
    with store.transaction() as session:
        assert session.execute(text("SELECT count(*) FROM users")).scalar_one() == 1


class _Pressed(BaseException):
    """Ctrl-C in this test (a BaseException as KeyboardInterrupt is, without stopping pytest
    if one ever landed outside the block)."""


def test_ctrl_c_again_while_waiting_for_the_statement_thread_commits_nothing(
    store: Store,
) -> None:
    """SQLite runs the statements on a thread (`driver.pipelined`). Ctrl-C in the block
    stops it, and Ctrl-C pressed again while the main thread waits for it must not end the
    wait: a rollback under the running statement let the statements after it commit on
    their own (and closing the connection under it crashed the process)."""
    if store.dialect == "postgresql":
        pytest.skip("the statement thread is SQLite's")
    insert = text(
        "INSERT INTO users (id, tracking, status, created_at) "
        "VALUES (7, 'tracked', 'active', '2026-06-01')"
    )
    presses: list[int] = []

    def press(*_: object) -> None:
        presses.append(len(presses) + 1)
        raise _Pressed(f"press {len(presses)}")

    def press_three_times() -> None:
        for _ in range(3):
            time.sleep(0.05)
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGUSR1)

    previous = signal.signal(signal.SIGUSR1, press)
    try:
        with pytest.raises(_Pressed, match="press 1"), store.transaction() as session:
            # sqlite3 cannot cut a Python function short: the statement outlasts the presses
            session.connection().connection.dbapi_connection.create_function(  # type: ignore[union-attr]
                "test_sleep", 1, time.sleep
            )
            slow: driver.Statement = (text("SELECT test_sleep(1.0)"), {})
            with driver.pipelined(session, "the test's statements", [slow, (insert, {})]):
                threading.Thread(target=press_three_times).start()
                time.sleep(5)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert presses == [1, 2, 3]
    with store.transaction() as session:
        assert session.execute(text("SELECT count(*) FROM users")).scalar_one() == 0
