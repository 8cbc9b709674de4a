"""Engine, transactions and schema version checks for SQLite and PostgreSQL.

SQLite runs in WAL mode with foreign keys on, and every transaction starts with
``BEGIN IMMEDIATE`` so that two processes serialise on the write lock at the start instead of
failing on upgrade later. PostgreSQL serialises audit-chain writers with a transaction-level
advisory lock (see ``audit_lock``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Unpack

from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from entrasync.errors import EntrasyncError, SchemaOutOfDate
from entrasync.store import urls
from entrasync.store.driver import on_postgresql
from entrasync.store.engines import (
    READ_ONLY_OPTION,
    is_connect_error,
    is_write_refused,
    make_engine,
    make_read_only_engine,
    store_error,
    write_refused,
)
from entrasync.store.uow import UnitOfWork, UnitOfWorkOptions, open_unit_of_work

MIGRATIONS = Path(__file__).parent / "migrations"
_AUDIT_LOCK_KEY = 0x656E7472  # "entr": one advisory lock id for the audit chain head
_WRITERS_LOCKED = "entrasync.writers_locked"  # session.info: the transaction holding it
_MIGRATION_LOCK_KEY = 0x656E7475  # "entu": `db upgrade`, one at a time


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
                f"store {urls.safe_url(self.url)} is open read-only: a read command started a "
                "write transaction (this is a bug)"
            )
        session = self._sessions()
        try:
            with session.begin():
                yield session
        except DBAPIError as exc:
            if is_write_refused(exc):
                raise write_refused(exc, self.url) from None
            if not is_connect_error(exc):
                raise
            raise store_error(exc, self.url) from None
        finally:
            session.close()

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A read-only session: one consistent snapshot, rolled back at the end (on SQLite it
        takes no write lock, so reads neither wait for nor block a writer)."""
        try:
            with self.engine.connect().execution_options(**{READ_ONLY_OPTION: True}) as conn:
                session = Session(bind=conn)
                try:
                    yield session
                finally:
                    session.close()
        except DBAPIError as exc:
            if not is_connect_error(exc):
                raise
            raise store_error(exc, self.url) from None

    def unit_of_work(
        self, now: datetime, **options: Unpack[UnitOfWorkOptions]
    ) -> AbstractContextManager[UnitOfWork]:
        """A write transaction with its audit appender, as `actor` in `run_id`; with
        `account`, the settings + compliance tail runs once before commit (see
        store/uow.py)."""
        return open_unit_of_work(self.transaction, self.audit_lock, now=now, **options)

    def audit_lock(self, session: Session) -> None:
        """Serialise writers of the audit chain for the rest of this transaction."""
        lock_writers(session)

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
            if not is_connect_error(exc):
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
                f"store {urls.safe_url(self.url)} {state}, the code needs {head}: "
                "run `entrasync db upgrade` first"
            )

    def upgrade(self) -> tuple[str | None, str]:
        """Apply pending migrations; returns (revision before, revision after)."""
        from alembic import command

        try:
            with self._migration_lock():
                before, head = self.schema_versions()
                if before is not None and not self._known_revision(before):
                    raise SchemaOutOfDate(_unknown_revision(self.url, before, head))
                command.upgrade(self._alembic_config(), "head")
        except DBAPIError as exc:
            if is_connect_error(exc):
                raise store_error(exc, self.url) from None
            raise EntrasyncError(
                f"store {urls.safe_url(self.url)}: migration failed: {urls.hide(exc.orig, self.url)}"
            ) from None
        except CommandError as exc:
            raise EntrasyncError(
                f"store {urls.safe_url(self.url)}: migration failed: {urls.hide(exc, self.url)}"
            ) from None
        return before, head

    @contextmanager
    def _migration_lock(self) -> Iterator[None]:
        """Two instances started together on a new PostgreSQL database (two pods, both with
        `run --upgrade`) would both create the schema and one would fail on alembic_version:
        the second waits, then finds the schema current. SQLite serves one instance."""
        if not on_postgresql(self.engine):
            yield
            return
        with self.engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK_KEY})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK_KEY})
                conn.commit()


def lock_writers(session: Session) -> None:
    """Serialise with every other writer for the rest of this transaction (the audit chain's
    head, the license tally). Taken once per transaction (a purge batch asks twice)."""
    if not on_postgresql(session):
        return  # SQLite: BEGIN IMMEDIATE already holds the database write lock.
    current = _innermost(session)
    if current is not None and session.info.get(_WRITERS_LOCKED) is current:
        return  # before any transaction both are None: the lock is taken below
    session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _AUDIT_LOCK_KEY})
    # Keyed by the innermost transaction: a savepoint rolled back may release the lock.
    session.info[_WRITERS_LOCKED] = _innermost(session)


def _innermost(session: Session) -> object | None:
    return session.get_nested_transaction() or session.get_transaction()


def _unknown_revision(url: str, current: str, head: str) -> str:
    return (
        f"store {urls.safe_url(url)} is at revision {current}, which this version of entrasync "
        f"does not know (it knows up to {head}): the store was upgraded by a newer entrasync; "
        "run that version, or restore a backup"
    )
