"""Opening the store's database: engines for writers and for the read commands, and the
named errors a database gives while it is reached (password always masked)."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError

from entrasync.errors import ConfigError, EntrasyncError, SchemaOutOfDate, StoreUnavailable
from entrasync.store import urls
from entrasync.store.driver import register_id_arrays

READ_ONLY_OPTION = "entrasync_read_only"  # execution option of Store.reading's connections
_SQLITE_READONLY_DIRECTORY = 1544  # SQLite cannot create the -shm/-wal files next to the file


def _safe_url(url: str) -> str:
    """The URL with any password hidden, for messages."""
    return urls.safe_url(url)


def _hide(message: object, url: str) -> str:
    """An error message from a driver or URL parser, with the store password removed."""
    return urls.hide(message, url)


def store_error(exc: DBAPIError, url: str) -> EntrasyncError:
    """The documented failure for a database error while reaching the store: unreachable
    (69) when the server or file cannot be reached now, bad configuration (78) when the
    driver refused the URL itself (`?connect_timeout=abc`, an unknown option, a file that is
    not a database). The message names the store with its password masked."""
    reason = _hide(exc.orig if exc.orig is not None else exc, url).strip()
    if isinstance(exc, OperationalError):
        return StoreUnavailable(f"store {_safe_url(url)}: {reason}")
    return ConfigError(f"store.url: {_safe_url(url)}: {reason}")


# PostgreSQL: read_only_sql_transaction, insufficient_privilege. SQLite says it in words.
_REFUSED_SQLSTATES = frozenset({"25006", "42501"})


def is_write_refused(exc: DBAPIError) -> bool:
    if getattr(exc.orig, "sqlstate", None) in _REFUSED_SQLSTATES:
        return True
    return "readonly database" in str(exc.orig)


def write_refused(exc: DBAPIError, url: str) -> EntrasyncError:
    """A writer pointed at a store it may only read: a configuration to fix, not a bug."""
    reason = _hide(exc.orig if exc.orig is not None else exc, url).strip().splitlines()[0]
    return ConfigError(
        f"store.url: {_safe_url(url)}: the database refused a write ({reason}). This command "
        "writes, so it needs a database role and a file it may write to (the read commands, "
        "`plan` among them, work read-only)"
    )


def is_connect_error(exc: DBAPIError) -> bool:
    # SQLAlchemy leaves `statement` empty for errors raised while opening the connection;
    # errors of a statement are the caller's (a constraint, a bug) and stay as they are.
    return isinstance(exc, OperationalError) or exc.statement is None


def make_engine(url: str) -> Engine:
    try:
        urls.parse(url)
    except ValueError as exc:
        raise ConfigError(f"store.url: {exc}") from None
    try:
        if url.startswith("sqlite"):
            # A purge batch runs statements on a worker thread (`driver.pipelined`): as
            # SQLAlchemy sets it for files, whatever the database (`:memory:` included).
            engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
            _configure_sqlite(engine)
            _prepare_sqlite_path(engine.url.database, url)
        else:
            engine = create_engine(url, pool_pre_ping=True)
            _configure_postgresql(engine)
    except (ArgumentError, ImportError, ValueError, TypeError) as exc:
        raise ConfigError(
            f"store.url: {_safe_url(url)} is not a usable database URL ({_hide(exc, url)})"
        ) from None
    return engine


def check_sqlite_location(url: str) -> None:
    """ConfigError when store.url names a SQLite file that can never be opened or created
    (a directory, or a path under a regular file). Creates nothing; other URLs pass."""
    if not url.startswith("sqlite"):
        return
    database = urls.parse(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if path.is_dir():
        raise ConfigError(f"store.url: {_safe_url(url)}: {path} is a directory, not a file")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise ConfigError(
                f"store.url: {_safe_url(url)}: {parent} is not a directory, so {path} "
                "cannot be created"
            )


def _prepare_sqlite_path(database: str | None, url: str) -> None:
    """Create the database's directory; a path that cannot hold a database is a config
    error naming what is in the way (a regular file where a directory must be, …)."""
    check_sqlite_location(url)
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    parent = Path(database).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"store.url: {_safe_url(url)}: cannot create the directory {parent} ({exc.strerror})"
        ) from None


def _pragmas_on_connect(engine: Engine, *pragmas: str) -> None:
    """Run `pragmas` on each new SQLite connection, and let SQLAlchemy emit BEGIN itself
    (see each engine's _on_begin) instead of pysqlite."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in pragmas:
            cursor.execute(pragma)
        cursor.close()


def _configure_sqlite(engine: Engine) -> None:
    _pragmas_on_connect(
        engine,
        "PRAGMA journal_mode=WAL",
        "PRAGMA foreign_keys=ON",
        "PRAGMA synchronous=NORMAL",
        "PRAGMA busy_timeout=30000",
    )

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writers take the write lock up front; readers (Store.reading) begin a deferred
        # transaction: a consistent WAL snapshot that never waits for, or blocks, a writer.
        read_only = conn.get_execution_options().get(READ_ONLY_OPTION, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


# --- the read-only opening (read commands: DESIGN.md "Read-only commands") -------------------


def make_read_only_engine(url: str) -> Engine:
    """An engine through which nothing can be written, so that a read command that tried
    would fail loudly: SQLite opens the existing file with ``mode=ro`` (never creating it),
    PostgreSQL sessions are ``READ ONLY``."""
    if not url.startswith("sqlite"):
        engine = make_engine(url)
        _configure_postgresql_read_only(engine)
        return engine
    database = _sqlite_database(url)
    if not database or database == ":memory:" or database.startswith("file:"):
        return make_engine(url)  # nothing on disk, or a URI whose options the operator chose
    path = _existing_store_file(database, url)
    engine = create_engine(url, creator=_read_only_connector(path, url))
    _configure_sqlite_read_only(engine)
    return engine


def _sqlite_database(url: str) -> str | None:
    try:
        return make_url(url).database
    except (ArgumentError, ValueError, TypeError) as exc:
        raise ConfigError(
            f"store.url: {_safe_url(url)} is not a usable database URL ({_hide(exc, url)})"
        ) from None


def _existing_store_file(database: str, url: str) -> Path:
    """A missing file is a store no `db upgrade` has created (or a store.url naming the wrong
    file): like an empty PostgreSQL database, exit 78 with the command that fixes it."""
    path = Path(database)
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise SchemaOutOfDate(
            f"store {_safe_url(url)} has no schema yet: {path} does not exist; "
            "run `entrasync db upgrade` to create it, or correct store.url"
        ) from None
    except OSError as exc:
        raise StoreUnavailable(
            f"store {_safe_url(url)}: cannot reach {path} ({exc.strerror})"
        ) from None
    if not stat.S_ISREG(mode):
        raise ConfigError(f"store.url: {_safe_url(url)}: {path} is not a file")
    return path


def _read_only_connector(path: Path, url: str) -> Callable[[], sqlite3.Connection]:
    uri = f"{path.absolute().as_uri()}?mode=ro"

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(uri, uri=True, timeout=30, check_same_thread=False)
        try:
            conn.execute("PRAGMA schema_version").fetchone()  # reads the header: opens the WAL
            return conn
        except sqlite3.OperationalError as exc:
            conn.close()
            wal = path.with_name(path.name + "-wal")
            if _unreadable_log(path, wal):
                raise StoreUnavailable(
                    f"store {_safe_url(url)}: {wal} holds changes not yet in {path.name}, and "
                    f"this user may not create the index to read them in {path.parent}: run a "
                    "writer once (`entrasync db upgrade`), or read as a user who may write there"
                ) from None
            if exc.sqlite_errorcode != _SQLITE_READONLY_DIRECTORY:
                raise
        # A WAL database whose -shm index this user may not create (a read-only directory or
        # mount) and no writer connected (it would have made the index): with no log to
        # replay, the file holds every committed change and can be read as it stands.
        return sqlite3.connect(f"{uri}&immutable=1", uri=True, timeout=30, check_same_thread=False)

    return connect


def _unreadable_log(path: Path, wal: Path) -> bool:
    """A write-ahead log with data but no -shm index (left by a crash, or copied without it)
    in a directory this user may not write: SQLite cannot replay it read-only."""
    shm = path.with_name(path.name + "-shm")
    return (
        wal.is_file()
        and wal.stat().st_size > 0
        and not shm.exists()
        and not os.access(path.parent, os.W_OK)
    )


def _configure_sqlite_read_only(engine: Engine) -> None:
    # No journal_mode here: changing it is a write.
    _pragmas_on_connect(engine, "PRAGMA busy_timeout=30000")

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN")  # deferred: a snapshot, never the write lock


def _configure_postgresql(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        register_id_arrays(dbapi_connection)
        # No server-side prepared statements: psycopg prepares a statement it has run five
        # times, and PostgreSQL may then plan it once, generically, for the connection's
        # life. Planned while a first sync was filling the Entra mirror from empty, the lookup of
        # a Graph page's objects (`object_id IN ($1 … $100)`) stayed a sequential scan that
        # compared every row with every parameter: about 0.9 s per page at 300,000 users,
        # and a first sync of 1,405 s instead of 519 s (bench/RESULTS.md, eighth round).
        # Unnamed statements are planned for their values each time (parsing costs little
        # beside what these batched statements do).
        dbapi_connection.prepare_threshold = None


def _configure_postgresql_read_only(engine: Engine) -> None:
    """On top of `make_engine`'s own connect hook (`_configure_postgresql`)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        cursor.close()
        dbapi_connection.commit()  # SET is transactional: kept only once committed
