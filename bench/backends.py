"""Where a backend's store and its two copies live (the raw-SQL sides of the purge and ingest
figures; the purge runs both of its sides on copies, `bench.purge`)."""

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
from entrasync.store.driver import on_postgresql


@dataclass
class Backend:
    """Where one backend's store (and its identical copies) live."""

    name: str  # sqlite | postgresql
    url: str
    copy_url: str
    twin_url: str  # a second copy, made the same way: the purge's other side
    make_copy: Callable[[], object]  # what it returns (the copy schema's URL) goes unused
    make_twin: Callable[[], object]
    cleanup: Callable[[], None]
    timings: dict[str, float] = field(default_factory=dict)


def sqlite_backend(workdir: Path) -> Backend:
    main, copy, twin = (workdir / f"store{tail}.db" for tail in ("", "-copy", "-twin"))

    def cleanup() -> None:
        for path in (main, copy, twin):
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)

    cleanup()
    return Backend(
        "sqlite",
        f"sqlite:///{main}",
        f"sqlite:///{copy}",
        f"sqlite:///{twin}",
        lambda: storegen.copy_sqlite(main, copy),
        lambda: storegen.copy_sqlite(main, twin),
        cleanup,
    )


def postgres_backend(base: str) -> Backend:
    tag = uuid.uuid4().hex[:8]
    schema, copy, twin = f"bench_{tag}", f"bench_{tag}_copy", f"bench_{tag}_twin"
    url = storegen.create_pg_schema(base, schema)

    def cleanup() -> None:
        for name in (schema, copy, twin):
            storegen.drop_pg_schema(base, name)

    return Backend(
        "postgresql",
        url,
        storegen.pg_schema_url(base, copy),
        storegen.pg_schema_url(base, twin),
        lambda: storegen.copy_pg_schema(base, schema, copy),
        lambda: storegen.copy_pg_schema(base, schema, twin),
        cleanup,
    )


@contextmanager
def timed(into: dict[str, float], key: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    into[key] = time.perf_counter() - started


def checkpoint(store: Store) -> None:
    """On PostgreSQL both sides start with the WAL flushed: the copies were just written,
    and a checkpoint falling inside one side's timing made that side up to twice as slow."""
    if not on_postgresql(store.engine):
        return
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("CHECKPOINT"))
