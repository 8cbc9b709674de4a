"""What SQLAlchemy cannot do with the driver, failing as SQLAlchemy would fail: a DB-API
cursor (PostgreSQL's COPY), statements run while the client works (`pipelined`: psycopg's
pipeline mode, or a thread on a SQLite connection), and lists of ids sent as one `bigint[]`
parameter without psycopg's per-element work (`IdArray`).

A driver error raised through a raw cursor is a bare `psycopg.Error`: `Store.transaction`
would not see a refused write (exit 78) or a lost server (exit 69), the daemon's
`STORE_ERRORS` would take it for a bug, and the pool would keep a dead connection. So the
error is raised again as the `DBAPIError` subclass SQLAlchemy would have raised
(`IntegrityError`, `OperationalError`, …), and a disconnect invalidates the connection.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from threading import Event, Thread
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import Executable

Statement = tuple[Executable, Mapping[str, Any]]  # a statement and its parameters


def on_postgresql(on: Session | Connection | Engine) -> bool:
    """Whether the store is PostgreSQL: the one question the store's code asks of its
    database. COPY, pipelines, id arrays and advisory locks are PostgreSQL's; on SQLite the
    same statements take the portable route."""
    bind = on.get_bind() if isinstance(on, Session) else on
    return bind.dialect.name == "postgresql"


@contextmanager
def raw_cursor(session: Session, statement: str) -> Iterator[Any]:
    """A cursor on the session's connection (in its transaction); `statement` names what
    it runs in an error."""
    connection = session.connection()
    cursor = connection.connection.cursor()
    try:
        with _as_sqlalchemy(connection, statement, cursor):
            yield cursor
    finally:
        if not cursor.closed:
            cursor.close()


@contextmanager
def pipelined(session: Session, what: str, statements: Iterable[Statement]) -> Iterator[None]:
    """Run `statements` (each with its parameters), in order and in the session's
    transaction, while the block runs: the block's own work overlaps the database's, and
    every statement is done when the block ends. PostgreSQL: psycopg's pipeline mode (sent
    without waiting for each result). SQLite: a thread on the session's connection (sqlite3
    lets go of the GIL while a statement runs), so the block must not use the session; when
    the block fails, the statements still to run are dropped and the running one is cut
    short. Results and row counts are not available: for statements whose outcome the
    caller knows already. Pending ORM changes are flushed first (a flush reads row counts).
    `what` names the statements in an error, raised as SQLAlchemy's when the block ends."""
    session.flush()
    connection = session.connection()
    if not on_postgresql(connection):
        with _on_a_worker(connection, list(statements)):
            yield
        return
    if not _pipeline_supported():  # a libpq older than 14 has no pipeline mode
        _execute(connection, statements)
        yield
        return
    psycopg_connection: Any = connection.connection.dbapi_connection
    with _as_sqlalchemy(connection, what, None), psycopg_connection.pipeline():
        _execute(connection, statements)
        yield


@contextmanager
def _on_a_worker(connection: Connection, statements: list[Statement]) -> Iterator[None]:
    """`statements` run on another thread while the block runs. The thread is done before
    anything else happens to the transaction, whatever the block or the main thread is told
    meanwhile (`_StatementThread.wait`); the block's error wins over the thread's."""
    thread = _StatementThread(connection, statements)
    thread.start()
    try:
        thread.started.wait()
        yield
    except BaseException:
        thread.stop()  # the transaction rolls back: the rest would be undone anyway
        thread.wait()
        raise
    interrupted = thread.wait()
    if interrupted is not None:
        raise interrupted
    if thread.error is not None:
        raise thread.error


class _StatementThread(Thread):
    """Runs statements on the main thread's connection, in its transaction. The block
    starts once the first statement is about to run (`started`): a thread that wakes while
    another runs Python waits for the GIL up to `sys.getswitchinterval()` (5 ms), and so
    did the first statement, a purge's longest (bench: purge)."""

    def __init__(self, connection: Connection, statements: list[Statement]) -> None:
        super().__init__(name="entrasync-store", daemon=True)
        self.connection = connection
        self.statements = statements
        self.started = Event()
        self.stopping = Event()
        self.done = Event()  # not `join`: Python 3.11 takes an interrupted join for done
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for statement, parameters in self.statements:
                if self.stopping.is_set():
                    return
                self.started.set()  # let go of the GIL to sqlite3 and the waiting block
                self.connection.execute(statement, parameters)
        except BaseException as exc:  # raised by the main thread
            self.error = exc
        finally:
            self.started.set()  # no statement, or stopped before the first
            self.done.set()

    def stop(self) -> None:
        """No further statement; the running one is cut short (sqlite3 allows this from
        another thread; it fails as `interrupted`)."""
        self.stopping.set()
        self.connection.connection.dbapi_connection.interrupt()  # type: ignore[union-attr]

    def wait(self) -> BaseException | None:
        """Wait until the statements are done, even if the main thread is interrupted
        meanwhile (Ctrl-C pressed again): rolling back or closing the connection under a
        running statement let the statements after it commit on their own, or crashed the
        process. The first interruption stops the thread; it is returned once the thread
        is done."""
        interrupted: BaseException | None = None
        while not self.done.is_set():
            try:
                self.done.wait()
            except BaseException as exc:
                if interrupted is None:
                    interrupted = exc
                    self.stop()
        return interrupted


def _execute(connection: Connection, statements: Iterable[Statement]) -> None:
    for statement, parameters in statements:
        connection.execute(statement, parameters)


class IdArray(list[int]):
    """Ids for one `bigint[]` parameter. psycopg's own list dumper converts each element
    and runs a quoting regex on it (about 0.4 ms per 1,000 ids; a purge batch sends 5,000);
    ints never need quotes, so `register_id_arrays`' dumper joins them in one pass. The
    parameter is still typed `bigint[]`, so the planner sees the list's values and length
    (a text parameter cast by the server is not folded at plan time). Every store connection
    has the dumper (`engines._configure_postgresql`); without it psycopg's list dumper would
    type the array by its values (int2[] … numeric[]), not as `bigint[]`."""


def register_id_arrays(dbapi_connection: Any) -> None:
    """Teach a new psycopg connection `IdArray` (the engine's `connect` event)."""
    from psycopg.adapt import Dumper  # the PostgreSQL driver, there only when a store uses it
    from psycopg.postgres import types

    class _IdArrayDumper(Dumper):
        oid = types["int8"].array_oid

        def dump(self, obj: list[int]) -> bytes:
            return b"{" + ",".join(map(str, obj)).encode("ascii") + b"}"

    dbapi_connection.adapters.register_dumper(IdArray, _IdArrayDumper)


def _pipeline_supported() -> bool:
    import psycopg  # the PostgreSQL driver, there only when a store uses it

    return bool(psycopg.Pipeline.is_supported())


@contextmanager
def _as_sqlalchemy(connection: Connection, statement: str, cursor: Any) -> Iterator[None]:
    dialect = connection.dialect
    dbapi_error = dialect.loaded_dbapi.Error
    try:
        yield
    except dbapi_error as exc:
        lost = dialect.is_disconnect(exc, connection.connection.dbapi_connection, cursor)
        if lost:
            connection.invalidate(exc)
        raise DBAPIError.instance(
            statement, None, exc, dbapi_error, connection_invalidated=lost, dialect=dialect
        ) from exc
