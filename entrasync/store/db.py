"""Engine, transactions and schema version checks for SQLite and PostgreSQL.

SQLite runs in WAL mode with foreign keys on, and every transaction starts with
``BEGIN IMMEDIATE`` so that two processes serialise on the write lock at the start instead of
failing on upgrade later. PostgreSQL serialises audit-chain writers with a transaction-level
advisory lock (see ``audit_lock``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from entrasync.errors import ConfigError, EntrasyncError, SchemaOutOfDate, StoreUnavailable

MIGRATIONS = Path(__file__).parent / "migrations"
_READ_ONLY = "entrasync_read_only"
_AUDIT_LOCK_KEY = 0x656E7472  # "entr": one advisory lock id for the audit chain head


_USERINFO = re.compile(r"^(?P<head>[^:/?#]+://[^:/?#@]*:)(?P<password>[^@/?#]*)@")


def _safe_url(url: str) -> str:
    """The URL with any password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        # Unparseable (e.g. a bad port): still show it, minus anything that may be a password.
        return _USERINFO.sub(lambda m: f"{m['head']}***@", url)


def _passwords(url: str) -> set[str]:
    found: set[str] = set()
    try:
        password = make_url(url).password
        if password:
            found.add(str(password))
    except (ArgumentError, ValueError):
        pass
    match = _USERINFO.match(url)
    if match and match["password"]:
        found.update({match["password"], unquote(match["password"])})
    return found


def _hide(message: object, url: str) -> str:
    """An error message from a driver or URL parser, with the store password removed."""
    text = str(message)
    for password in sorted(_passwords(url), key=len, reverse=True):
        text = text.replace(password, "***")
    return text


def make_engine(url: str) -> Engine:
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"timeout": 30})
            _configure_sqlite(engine)
            db_path = engine.url.database
            if db_path and db_path != ":memory:":
                Path(db_path).parent.mkdir(parents=True, exist_ok=True)
        else:
            engine = create_engine(url, pool_pre_ping=True)
    except (ArgumentError, ImportError, ValueError) as exc:
        raise ConfigError(
            f"store.url: {_safe_url(url)} is not a usable database URL ({_hide(exc, url)})"
        ) from None
    return engine


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


class Store:
    """The database: one engine, sessions as units of work."""

    def __init__(self, url: str, *, check_schema: bool = True) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        if check_schema:
            self.require_current_schema()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work: commit on success, roll back on any exception."""
        session = self._sessions()
        try:
            with session.begin():
                yield session
        except OperationalError as exc:
            raise StoreUnavailable(
                f"store {_safe_url(self.url)}: {_hide(exc.orig, self.url)}"
            ) from None
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
        except OperationalError as exc:
            raise StoreUnavailable(
                f"store {_safe_url(self.url)}: {_hide(exc.orig, self.url)}"
            ) from None

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
        except OperationalError as exc:
            raise StoreUnavailable(
                f"store {_safe_url(self.url)}: {_hide(exc.orig, self.url)}"
            ) from None
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
        except OperationalError as exc:
            raise StoreUnavailable(
                f"store {_safe_url(self.url)}: {_hide(exc.orig, self.url)}"
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
