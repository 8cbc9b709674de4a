"""Where a backend's store (and its identical copy for the raw-SQL side) live."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import text

from bench import storegen
from entrasync.store.db import Store


@dataclass
class Backend:
    """Where one backend's store (and its identical copy) live."""

    name: str  # sqlite | postgresql
    url: str
    copy_url: str
    make_copy: Callable[[], object]  # what it returns (the copy schema's URL) goes unused
    cleanup: Callable[[], None]
    timings: dict[str, float] = field(default_factory=dict)


def sqlite_backend(workdir: Path) -> Backend:
    main, copy = workdir / "store.db", workdir / "store-copy.db"

    def cleanup() -> None:
        for path in (main, copy):
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)

    cleanup()
    return Backend(
        "sqlite",
        f"sqlite:///{main}",
        f"sqlite:///{copy}",
        lambda: storegen.copy_sqlite(main, copy),
        cleanup,
    )


def postgres_backend(base: str) -> Backend:
    tag = uuid.uuid4().hex[:8]
    schema, copy = f"bench_{tag}", f"bench_{tag}_copy"
    url = storegen.create_pg_schema(base, schema)

    def cleanup() -> None:
        storegen.drop_pg_schema(base, schema)
        storegen.drop_pg_schema(base, copy)

    return Backend(
        "postgresql",
        url,
        storegen.pg_schema_url(base, copy),
        lambda: storegen.copy_pg_schema(base, schema, copy),
        cleanup,
    )


@contextmanager
def timed(into: dict[str, float], key: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    into[key] = time.perf_counter() - started


def checkpoint(store: Store) -> None:
    """On PostgreSQL both sides start with the WAL flushed: the copy was just written, and a
    checkpoint falling inside one side's timing made that side up to twice as slow."""
    if store.dialect != "postgresql":
        return
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("CHECKPOINT"))
