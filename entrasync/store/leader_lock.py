"""Leader election for `entrasync run`: only one daemon per store acts; the others stand by.

* **PostgreSQL**: a session-level advisory lock (``pg_try_advisory_lock``) held on a
  dedicated connection that does nothing else. PostgreSQL releases it the moment that session
  ends — the process died, or the connection broke — so a standby's next try wins. The
  connection asks the server for TCP keepalives so that a leader whose host vanished (no FIN,
  no RST) is noticed within about half a minute. A leader checks its connection before each
  job and every few seconds; if it is gone, the lock may already belong to someone else, so it
  steps down at once rather than act without it. (A connection pooler in transaction mode,
  such as PgBouncer's, breaks session locks: point the daemon at PostgreSQL directly.)
* **SQLite**: an OS file lock (``flock``) on ``<database>.leader.lock`` beside the database
  file, via `filelock`. The kernel releases it when the process dies. SQLite stores live on
  one host, so this is enough; a network file system is not supported.
* An in-memory SQLite store (tests, the demo) has nobody to compete with: always leader.
"""

from __future__ import annotations

import contextlib
import logging
import zlib
from pathlib import Path
from typing import Protocol

from filelock import FileLock, Timeout
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

log = logging.getLogger("entrasync.daemon.leader")

# The leader's advisory lock id: "entr" in the high 32 bits, a CRC-32 of the schema the
# store lives in (its search_path) in the low ones — so deployments sharing one database in
# separate schemas elect separate leaders. (The audit chain's lock, entrasync.store.db, is a
# small number: high half 0, no clash.)
LEADER_LOCK_CLASS = 0x656E7472


def leader_lock_key(schema: str) -> int:
    return (LEADER_LOCK_CLASS << 32) | zlib.crc32(schema.encode("utf-8"))


# Server-side keepalives for the lock's session: a dead leader host is noticed in ~25 s.
_KEEPALIVES = "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3"


class LeaderLock(Protocol):
    description: str
    # Why the last try_acquire/still_held failed for want of the store (or the lock file):
    # None when it answered. A standby backs off while the store is unreachable.
    last_error: str | None

    def try_acquire(self) -> bool:
        """Take the lock if it is free; True when this process holds it (now or already)."""

    def still_held(self) -> bool:
        """Whether the lock is still ours (False after a lost connection)."""

    def release(self) -> None:
        """Give the lock up (idempotent)."""


class PostgresLeaderLock:
    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        options = str(parsed.query.get("options", "") or "")
        self._engine: Engine = create_engine(
            parsed,
            poolclass=NullPool,
            connect_args={"options": f"{options} {_KEEPALIVES}".strip(), "connect_timeout": 5},
        )
        self._conn: Connection | None = None
        self._held = False
        self.key = 0
        self.description = "PostgreSQL session advisory lock"
        self.last_error: str | None = None

    def _connection(self) -> Connection:
        if self._conn is None:
            conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            self.key = leader_lock_key(str(conn.scalar(text("SELECT current_schema()"))))
            self._conn = conn
        return self._conn

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        self._held = False
        if conn is not None:
            try:
                conn.invalidate()
                conn.close()
            except SQLAlchemyError:
                pass

    def try_acquire(self) -> bool:
        if self._held:
            return self.still_held()
        try:
            conn = self._connection()
            got = conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key})
        except SQLAlchemyError as exc:
            self._unreachable("cannot reach the store", exc)
            return False
        self.last_error = None
        self._held = bool(got)
        return self._held

    def _unreachable(self, what: str, exc: SQLAlchemyError) -> None:
        if self.last_error is None:  # once per outage, not at every retry
            log.warning("leader lock: %s: %s", what, type(exc).__name__)
        self.last_error = f"{what}: {type(exc).__name__}"
        self._drop_connection()

    def still_held(self) -> bool:
        if not self._held or self._conn is None:
            return False
        try:
            held = self._conn.scalar(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                    "AND pid = pg_backend_pid() AND granted "
                    "AND objsubid = 1 AND ((classid::bigint << 32) | objid::bigint) = :k"
                ),
                {"k": self.key},
            )
        except SQLAlchemyError as exc:
            self._unreachable("connection lost", exc)
            return False
        self.last_error = None
        if not held:
            self._held = False
        return bool(held)

    def release(self) -> None:
        if self._held and self._conn is not None:
            with contextlib.suppress(SQLAlchemyError):
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
        self._drop_connection()
        self._engine.dispose()


class FileLeaderLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = f"file lock {path}"
        self.last_error: str | None = None
        # Not thread-local: the lock is taken and checked from the scheduler's worker threads.
        # No soft-lock fallback (a stale soft lock outlives a killed leader) and the file is
        # kept on release (unlinking a flock'ed file lets two processes both "hold" it).
        self._lock = FileLock(
            path,
            thread_local=False,
            blocking=False,
            fallback_to_soft=False,
            preserve_lock_file=True,
        )

    def try_acquire(self) -> bool:
        if self._lock.is_locked:
            return True
        try:
            self._lock.acquire(blocking=False)
        except Timeout:
            self.last_error = None
            return False
        except OSError as exc:
            if self.last_error is None:
                log.warning("leader lock: cannot use %s: %s", self.path, exc.strerror)
            self.last_error = f"cannot use {self.path}: {exc.strerror}"
            return False
        self.last_error = None
        return True

    def still_held(self) -> bool:
        return self._lock.is_locked

    def release(self) -> None:
        if self._lock.is_locked:
            self._lock.release(force=True)


class SoleLeader:
    """Nothing to compete with (an in-memory store)."""

    description = "none (in-memory store)"
    last_error: str | None = None

    def try_acquire(self) -> bool:
        return True

    def still_held(self) -> bool:
        return True

    def release(self) -> None:
        return None


def leader_lock_for(engine: Engine) -> LeaderLock:
    url = engine.url
    if url.get_backend_name() == "postgresql":
        return PostgresLeaderLock(url.render_as_string(hide_password=False))
    database = url.database
    if url.get_backend_name() == "sqlite" and database and database != ":memory:":
        db = Path(database)
        return FileLeaderLock(db.with_name(db.name + ".leader.lock"))
    return SoleLeader()
