"""A store that matches a generated tenant, written with bulk inserts (not the ingest path).

Every Entra user `n` (`user{n:06d}@contoso.com|fabrikam.com`) has store record `n + 1` with
the identifiers an agent would have taught it (upn, email, employee id, its logons) and one
domain agent `CONTOSO\\user{n:06d}`; the agents beyond one per user are standalone-computer
logons (`PC-…\\user…`) of the first users, a second license each. Activity rows are spread
evenly over the agents. The records are not linked to Entra yet: the initial sync does that.

SQLite is loaded with `executemany` on the DB-API connection, PostgreSQL with `COPY`; the
activity table's secondary indexes are dropped for the load and rebuilt afterwards (one sort
each instead of five million random index inserts).
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Engine, make_url

from bench.scenario import Scenario
from entrasync.sim.generate import DOMAINS
from entrasync.store import tally
from entrasync.store.db import Store
from entrasync.store.driver import on_postgresql
from entrasync.store.schema import Base

SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy stores DateTime on SQLite
APPS = ("excel.exe", "outlook.exe", "teams.exe", "chrome.exe", "code.exe")
_BATCH = 20_000


def upn_of(n: int) -> str:
    return f"user{n:06d}@{DOMAINS[n % len(DOMAINS)]}"


def domain_logon_of(n: int) -> str:
    return f"{DOMAINS[n % len(DOMAINS)].split('.')[0]}\\user{n:06d}"


def agent_owner(scenario: Scenario, agent: int) -> int:
    """The user index (0-based) that agent index `agent` belongs to."""
    return agent % scenario.users


def agent_logon(scenario: Scenario, agent: int) -> str:
    n = agent_owner(scenario, agent)
    return domain_logon_of(n) if agent < scenario.users else f"pc-{agent:06d}\\user{n:06d}"


def agent_device(scenario: Scenario, agent: int) -> str:
    n = agent_owner(scenario, agent)
    return f"LAPTOP-{n:06d}" if agent < scenario.users else f"PC-{agent:06d}"


def rows_of_agent(scenario: Scenario, agent: int) -> int:
    base, extra = divmod(scenario.activity_rows, scenario.agents)
    return base + (1 if agent < extra else 0)


# -- URLs and schemas ---------------------------------------------------------------------


def pg_schema_url(base: str, schema: str) -> str:
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


def create_pg_schema(base: str, schema: str) -> str:
    engine = create_engine(base)
    with engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    engine.dispose()
    return pg_schema_url(base, schema)


def drop_pg_schema(base: str, schema: str) -> None:
    engine = create_engine(base)
    with engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
    engine.dispose()


# -- loading ------------------------------------------------------------------------------


@dataclass
class _Loader:
    engine: Engine
    loaded: list[str] = field(default_factory=list)  # tables written (to analyse)

    @property
    def sqlite(self) -> bool:
        return not on_postgresql(self.engine)

    def load(self, table: str, columns: Sequence[str], rows: Iterable[tuple[Any, ...]]) -> None:
        self.loaded.append(table)
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            if self.sqlite:
                cursor.execute("PRAGMA synchronous=OFF")
                cursor.execute("BEGIN")
                sql = (
                    f"INSERT INTO {table} ({', '.join(columns)}) "
                    f"VALUES ({', '.join('?' for _ in columns)})"
                )
                iterator = iter(rows)
                while batch := list(islice(iterator, _BATCH)):
                    cursor.executemany(sql, [tuple(_sqlite_value(v) for v in r) for r in batch])
                cursor.execute("COMMIT")
            else:
                with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
                raw.commit()
        finally:
            raw.close()

    def secondary_indexes(self, table: str) -> list[tuple[str, str]]:
        """(name, CREATE statement) of the indexes of a table that no constraint owns (the
        primary key and UNIQUE constraints stay; a unique index such as the activity event
        identity is dropped and rebuilt like the others: the loaded rows satisfy it)."""
        with self.engine.connect() as conn:
            if self.sqlite:
                # constraint indexes are the `sqlite_autoindex_*` ones, without SQL
                rows = conn.execute(
                    text(
                        "SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                        "AND tbl_name = :t AND sql IS NOT NULL"
                    ),
                    {"t": table},
                ).all()
            else:
                rows = conn.execute(
                    text(
                        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = :t "
                        "AND schemaname = current_schema() AND indexname NOT IN ("
                        "SELECT conname FROM pg_constraint "
                        "WHERE connamespace = current_schema()::regnamespace)"
                    ),
                    {"t": table},
                ).all()
        return [(str(n), str(s)) for n, s in rows]

    def without_indexes(self, table: str) -> list[tuple[str, str]]:
        indexes = self.secondary_indexes(table)
        with self.engine.begin() as conn:
            for name, _ in indexes:
                conn.execute(text(f"DROP INDEX {name}"))
        return indexes

    def restore_indexes(self, indexes: list[tuple[str, str]]) -> None:
        with self.engine.begin() as conn:
            for _, ddl in indexes:
                conn.execute(text(ddl))

    def finish(self) -> None:
        with self.engine.begin() as conn:
            if not self.sqlite:
                for table in Base.metadata.sorted_tables:
                    for column in table.primary_key.columns:
                        if column.autoincrement is True:
                            conn.execute(
                                text(
                                    f"SELECT setval(pg_get_serial_sequence('{table.name}', "
                                    f"'{column.name}'), COALESCE((SELECT max({column.name}) "
                                    f"FROM {table.name}), 0) + 1, false)"
                                )
                            )
        if not self.sqlite:
            _vacuum_analyze(self.engine, self.loaded)


def _vacuum_analyze(engine: Engine, tables: Iterable[str] | None = None) -> None:
    """What autovacuum would have done by the time a store is this big (planner statistics,
    the visibility map), on this schema's tables only: others share the database. The test
    server runs with autovacuum off. Statistics matter twice: analysed while empty, the
    mirror tables are planned as empty forever (sequential scans per Graph page: a
    quadratic initial sync); analysed before the initial sync, the identity-match queries of
    a steady cycle are planned as if every record were still unlinked (seconds, not ms)."""
    if tables is None:
        tables = inspect(engine).get_table_names()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in tables:
            conn.execute(text(f"VACUUM ANALYZE {table}"))


def analyze_pg(url: str) -> None:
    engine = create_engine(url)
    try:
        _vacuum_analyze(engine)
    finally:
        engine.dispose()


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime(SQLITE_TIME)
    return value


def build_store(url: str, scenario: Scenario, t0: datetime) -> None:
    """Migrate an empty database at `url` and fill it for `scenario`."""
    Store(url, check_schema=False).upgrade()
    engine = Store(url).engine
    loader = _Loader(engine)
    created = t0 - timedelta(days=365)
    last_activity = t0 - timedelta(days=1)
    users = scenario.users
    loader.load(
        "users",
        ("id", "tracking", "status", "display_name", "created_at", "last_activity_at"),
        (
            (n + 1, "tracked", "active", f"User {n:06d}", created, last_activity)
            for n in range(users)
        ),
    )
    loader.load("identifiers", ("user_id", "kind", "value"), _identifiers(scenario))
    loader.load(
        "agents",
        ("id", "user_id", "created_at"),
        ((a + 1, agent_owner(scenario, a) + 1, created) for a in range(scenario.agents)),
    )
    loader.load(
        "agent_logons",
        ("logon", "agent_id"),
        ((agent_logon(scenario, a), a + 1) for a in range(scenario.agents)),
    )
    indexes = loader.without_indexes("activity")
    loader.load(
        "activity",
        ("agent_id", "device", "start", "duration_s", "app", "title", "received_at"),
        _activity(scenario, t0),
    )
    loader.restore_indexes(indexes)
    loader.finish()
    engine.dispose()
    # Rows loaded in bulk bypass the writers that keep the license tally: count it once.
    store = Store(url)
    with store.unit_of_work(t0) as uow:
        tally.recount(uow.session)
    store.engine.dispose()


def _identifiers(scenario: Scenario) -> Iterator[tuple[int, str, str]]:
    for n in range(scenario.users):
        upn = upn_of(n)
        yield (n + 1, "upn", upn)
        yield (n + 1, "email", upn)
        yield (n + 1, "employee_id", f"e{n:06d}")
    for a in range(scenario.agents):
        yield (agent_owner(scenario, a) + 1, "logon", agent_logon(scenario, a))


def _activity(scenario: Scenario, t0: datetime) -> Iterator[tuple[Any, ...]]:
    most = rows_of_agent(scenario, 0)
    starts = [t0 - timedelta(days=2, hours=k) for k in range(most)]
    received = t0 - timedelta(days=1)
    titles = [f"Document {k}" for k in range(most)]
    for a in range(scenario.agents):
        device = agent_device(scenario, a)
        for k in range(rows_of_agent(scenario, a)):
            yield (a + 1, device, starts[k], 60 + k, APPS[k % len(APPS)], titles[k], received)


# -- identical copies (for the raw-SQL side of a comparison) -------------------------------


def copy_sqlite(src: Path, dst: Path) -> None:
    """A byte-identical copy of a SQLite store (WAL checkpointed first)."""
    con = sqlite3.connect(src)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{dst}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(src, dst)


def copy_pg_schema(base: str, src_schema: str, dst_schema: str) -> str:
    """A second schema with the same migrations and every row of `src_schema`."""
    url = create_pg_schema(base, dst_schema)
    Store(url, check_schema=False).upgrade()
    engine = create_engine(url)
    loader = _Loader(engine)
    src_tables = set(inspect(create_engine(pg_schema_url(base, src_schema))).get_table_names())
    ordered = [t.name for t in Base.metadata.sorted_tables if t.name in src_tables]
    ordered += sorted(src_tables - set(ordered) - {"alembic_version"})
    for table in ordered:
        indexes = loader.without_indexes(table)
        with engine.begin() as conn:
            # an exact copy: the store's triggers (migration 0010) would queue the copied
            # rows again, beside the copied queue
            conn.execute(text("SET LOCAL session_replication_role = replica"))
            # the migrations may have written rows already (the license tally's count)
            conn.execute(text(f"DELETE FROM {dst_schema}.{table}"))
            conn.execute(
                text(f"INSERT INTO {dst_schema}.{table} SELECT * FROM {src_schema}.{table}")
            )
        loader.restore_indexes(indexes)
        loader.loaded.append(table)
    loader.finish()
    engine.dispose()
    return url
