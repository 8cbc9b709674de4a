"""Engine, transactions and schema version checks for SQLite and PostgreSQL.

SQLite runs in WAL mode with foreign keys on, and every transaction starts with
``BEGIN IMMEDIATE`` so that two processes serialise on the write lock at the start instead of
failing on upgrade later. PostgreSQL serialises audit-chain writers with a transaction-level
advisory lock (see ``audit_lock``).
"""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from entrasync.domain.audit import SYSTEM_ACTOR
from entrasync.errors import ConfigError, EntrasyncError, SchemaOutOfDate, StoreUnavailable
from entrasync.store import urls
from entrasync.store.uow import UnitOfWork, open_unit_of_work

if TYPE_CHECKING:
    from entrasync.config import AccountConfig, NotifyConfig

MIGRATIONS = Path(__file__).parent / "migrations"
_READ_ONLY = "entrasync_read_only"
_AUDIT_LOCK_KEY = 0x656E7472  # "entr": one advisory lock id for the audit chain head
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


def _write_refused(exc: DBAPIError) -> bool:
    if getattr(exc.orig, "sqlstate", None) in _REFUSED_SQLSTATES:
        return True
    return "readonly database" in str(exc.orig)


def write_refused(exc: DBAPIError, url: str) -> EntrasyncError:
    """A writer pointed at a store it may only read: a configuration to fix, not a bug."""
    reason = _hide(exc.orig if exc.orig is not None else exc, url).strip().splitlines()[0]
    return ConfigError(
        f"store.url: {_safe_url(url)}: the database refused a write ({reason}). This command "
        "writes (`plan` and `--dry-run` too: they apply Graph's read in a transaction they "
        "roll back), so it needs a database role and a file it may write to"
    )


def _connect_error(exc: DBAPIError) -> bool:
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
            engine = create_engine(url, connect_args={"timeout": 30})
            _configure_sqlite(engine)
            _prepare_sqlite_path(engine.url.database, url)
        else:
            engine = create_engine(url, pool_pre_ping=True)
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


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN itself (see _on_begin) instead of pysqlite.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writers take the write lock up front; readers (Store.reading) begin a deferred
        # transaction: a consistent WAL snapshot that never waits for, or blocks, a writer.
        read_only = conn.get_execution_options().get(_READ_ONLY, False)
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
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN itself; no journal_mode here: changing it is a write.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN")  # deferred: a snapshot, never the write lock


def _configure_postgresql_read_only(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        cursor.close()
        dbapi_connection.commit()  # SET is transactional: kept only once committed


class Store:
    """The database: one engine, sessions as units of work. A read-only store (the read
    commands) refuses write transactions and is opened so that the database refuses writes
    too."""

    def __init__(self, url: str, *, check_schema: bool = True, read_only: bool = False) -> None:
        self.url = url
        self.read_only = read_only
        self.engine = make_read_only_engine(url) if read_only else make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        if check_schema:
            self.require_current_schema()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work: commit on success, roll back on any exception."""
        if self.read_only:
            raise RuntimeError(
                f"store {_safe_url(self.url)} is open read-only: a read command started a "
                "write transaction (this is a bug)"
            )
        session = self._sessions()
        try:
            with session.begin():
                yield session
        except DBAPIError as exc:
            if _write_refused(exc):
                raise write_refused(exc, self.url) from None
            if not _connect_error(exc):
                raise
            raise store_error(exc, self.url) from None
        finally:
            session.close()

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A read-only session: one consistent snapshot, rolled back at the end (on SQLite it
        takes no write lock, so reads neither wait for nor block a writer)."""
        try:
            with self.engine.connect().execution_options(**{_READ_ONLY: True}) as conn:
                session = Session(bind=conn)
                try:
                    yield session
                finally:
                    session.close()
        except DBAPIError as exc:
            if not _connect_error(exc):
                raise
            raise store_error(exc, self.url) from None

    def unit_of_work(
        self,
        now: datetime,
        *,
        actor: str = SYSTEM_ACTOR,
        run_id: str | None = None,
        account: AccountConfig | None = None,
        notify: NotifyConfig | None = None,
    ) -> AbstractContextManager[UnitOfWork]:
        """A write transaction with its audit appender; with `account`, the settings +
        compliance tail runs once before commit (see store/uow.py)."""
        return open_unit_of_work(
            self.transaction,
            self.audit_lock,
            now=now,
            actor=actor,
            run_id=run_id,
            account=account,
            notify=notify,
        )

    def audit_lock(self, session: Session) -> None:
        """Serialise writers of the audit chain for the rest of this transaction."""
        if self.dialect == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _AUDIT_LOCK_KEY})
        # SQLite: BEGIN IMMEDIATE already holds the database write lock.

    # --- schema versions -------------------------------------------------

    def _alembic_config(self) -> AlembicConfig:
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["engine"] = self.engine
        return cfg

    def _known_revision(self, revision: str) -> bool:
        try:
            return (
                ScriptDirectory.from_config(self._alembic_config()).get_revision(revision)
                is not None
            )
        except CommandError:
            return False

    def schema_versions(self) -> tuple[str | None, str]:
        """(current revision of the database, newest revision the code knows)."""
        head = ScriptDirectory.from_config(self._alembic_config()).get_current_head()
        assert head is not None
        try:
            with self.engine.connect() as conn:
                current = MigrationContext.configure(conn).get_current_revision()
        except DBAPIError as exc:
            if not _connect_error(exc):
                raise
            raise store_error(exc, self.url) from None
        return current, head

    def require_current_schema(self) -> None:
        current, head = self.schema_versions()
        if current is not None and current != head and not self._known_revision(current):
            raise SchemaOutOfDate(_unknown_revision(self.url, current, head))
        if current != head:
            state = "has no schema yet" if current is None else f"is at revision {current}"
            raise SchemaOutOfDate(
                f"store {_safe_url(self.url)} {state}, the code needs {head}: "
                "run `entrasync db upgrade` first"
            )

    def upgrade(self) -> tuple[str | None, str]:
        """Apply pending migrations; returns (revision before, revision after)."""
        from alembic import command

        before, head = self.schema_versions()
        if before is not None and not self._known_revision(before):
            raise SchemaOutOfDate(_unknown_revision(self.url, before, head))
        try:
            command.upgrade(self._alembic_config(), "head")
        except DBAPIError as exc:
            if _connect_error(exc):
                raise store_error(exc, self.url) from None
            raise EntrasyncError(
                f"store {_safe_url(self.url)}: migration failed: {_hide(exc.orig, self.url)}"
            ) from None
        except CommandError as exc:
            raise EntrasyncError(
                f"store {_safe_url(self.url)}: migration failed: {_hide(exc, self.url)}"
            ) from None
        return before, head


def _unknown_revision(url: str, current: str, head: str) -> str:
    return (
        f"store {_safe_url(url)} is at revision {current}, which this version of entrasync "
        f"does not know (it knows up to {head}): the store was upgraded by a newer entrasync; "
        "run that version, or restore a backup"
    )
