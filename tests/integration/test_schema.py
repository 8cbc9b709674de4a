"""`entrasync db upgrade`, and every other command refusing an empty or out-of-date schema."""

from __future__ import annotations

import threading
import warnings
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, UniqueConstraint, inspect
from testkit import BACKENDS, report, sql, write_config

from entrasync.errors import ExitCode, SchemaOutOfDate
from entrasync.store.db import Store
from entrasync.store.schema import Base

COMMANDS = [
    ["status"],
    ["status", "--json"],
    ["users", "list"],
    ["users", "show", "x@contoso.com"],
    ["users", "untrack", "x@contoso.com"],
    ["users", "purge", "x@contoso.com", "--yes"],
    ["users", "merge", "a@contoso.com", "b@contoso.com", "--yes"],
    ["audit", "list"],
    ["audit", "show", "1"],
    ["audit", "export"],
    ["audit", "verify"],
]


@pytest.fixture(params=BACKENDS)
def empty_url(request: pytest.FixtureRequest, make_store_url: Any) -> str:
    url: str = make_store_url(request.param)
    return url


@pytest.fixture
def empty_es(cli: Any, tmp_path: Path, empty_url: str) -> Any:
    path = write_config(tmp_path / "empty.toml", empty_url)
    return lambda *args: cli("--config", str(path), *args)


def _head(url: str) -> str:
    store = Store(url, check_schema=False)
    try:
        return store.schema_versions()[1]
    finally:
        store.engine.dispose()


def test_commands_refuse_an_empty_store(empty_es: Any, tmp_path: Path, empty_url: str) -> None:
    reports = tmp_path / "r.jsonl"
    reports.write_text(report("C\\a", "PC") + "\n", encoding="utf-8")
    for args in [*COMMANDS, ["ingest", str(reports)]]:
        result = empty_es(*args)
        assert result.code == SchemaOutOfDate.exit_code == ExitCode.CONFIG, args
        assert "has no schema yet" in result.err, args
        assert "run `entrasync db upgrade`" in result.err, args
        assert result.out == "", args


def test_db_upgrade_then_commands_work(empty_es: Any, empty_url: str) -> None:
    head = _head(empty_url)
    first = empty_es("db", "upgrade")
    assert first.code == 0, first.err
    assert f"upgraded from empty to revision {head}" in first.out
    again = empty_es("db", "upgrade")
    assert again.code == 0
    assert f"schema is current (revision {head})" in again.out
    assert empty_es("status", "--json").json()["licenses"]["used"] == 0
    assert empty_es("audit", "verify").code == 0


def test_commands_refuse_an_out_of_date_schema(empty_es: Any, empty_url: str) -> None:
    from alembic import command
    from alembic.script import ScriptDirectory

    store = Store(empty_url, check_schema=False)
    try:
        cfg = store._alembic_config()
        revisions = [r.revision for r in ScriptDirectory.from_config(cfg).walk_revisions()]
        if len(revisions) < 2:
            pytest.skip("only one migration exists: no older revision to be at")
        oldest = revisions[-1]
        command.upgrade(cfg, oldest)
    finally:
        store.engine.dispose()
    for args in COMMANDS:
        result = empty_es(*args)
        assert result.code == int(ExitCode.CONFIG), args
        assert f"is at revision {oldest}" in result.err, args
        assert "run `entrasync db upgrade`" in result.err, args
    upgraded = empty_es("db", "upgrade")
    assert upgraded.code == 0, upgraded.err
    assert f"upgraded from {oldest} to revision {revisions[0]}" in upgraded.out
    assert empty_es("status", "--json").code == 0


def test_upgrade_from_an_unknown_revision_is_a_clear_failure(es: Any, store_url: str) -> None:
    sql(store_url, "UPDATE alembic_version SET version_num = '9999_from_the_future'")
    for args in (["db", "upgrade"], ["status"]):
        result = es(*args)
        assert result.code == int(ExitCode.CONFIG), args
        assert "is at revision 9999_from_the_future" in result.err
        assert "newer entrasync" in result.err
        assert "run `entrasync db upgrade`" not in result.err


@pytest.mark.postgres
def test_two_instances_upgrading_a_new_database_together_both_succeed(
    make_store_url: Any,
) -> None:
    """Two pods started together with `run --upgrade` on a new PostgreSQL database: one
    migrates, the other waits and finds the schema current (before, one failed on
    alembic_version's primary key and restarted)."""
    url = make_store_url("postgresql")
    stores = [Store(url, check_schema=False) for _ in range(2)]
    results: list[Any] = []
    start = threading.Barrier(2)

    def upgrade(store: Store) -> None:
        start.wait()
        try:
            results.append(store.upgrade())
        except Exception as exc:  # the assertion below names it
            results.append(exc)

    threads = [threading.Thread(target=upgrade, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert all(isinstance(r, tuple) for r in results), results
        head = _head(url)
        assert sorted(r[0] is None for r in results) == [False, True]  # one found it done
        assert {r[1] for r in results} == {head}
    finally:
        for store in stores:
            store.engine.dispose()


def _indexes(tables: dict[str, Any]) -> set[tuple[str, str, tuple[str, ...]]]:
    return {
        (table, str(index["name"]), tuple(str(c) for c in index["column_names"]))
        for table, indexes in tables.items()
        for index in indexes
        if None not in index["column_names"]  # expression indexes: columns not reflected
    }


def test_the_migrations_build_the_indexes_the_code_declares(store_url: str) -> None:
    """A migration and schema.py agree on every plain index (a covering index declared in
    one and not the other would be a store that reads differently from the tested one)."""
    engine = Store(store_url).engine
    try:
        with engine.connect() as conn, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # expression indexes are not reflected
            inspector = inspect(conn)
            built = {t: inspector.get_indexes(t) for t in inspector.get_table_names()}
    finally:
        engine.dispose()
    declared = {
        (table.name, str(index.name), tuple(c.name for c in index.columns))
        for table in Base.metadata.sorted_tables
        for index in table.indexes
        if all(isinstance(e, Column) for e in index.expressions)
    }
    assert declared <= _indexes(built)
    assert ("identifiers", "ix_identifiers_user_id", ("user_id", "kind", "value")) in declared


def test_the_migrations_build_the_unique_constraints_the_code_declares(store_url: str) -> None:
    """No more and no fewer: a unique constraint the code dropped (the audit log's
    `prev_hash`, migration 0013) must be gone from a migrated store, on both databases."""
    engine = Store(store_url).engine
    try:
        with engine.connect() as conn, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # expression indexes are not reflected
            inspector = inspect(conn)
            built = {
                (table, tuple(str(c) for c in unique["column_names"]))
                for table in inspector.get_table_names()
                for unique in inspector.get_unique_constraints(table)
            }
    finally:
        engine.dispose()
    declared = {
        (table.name, tuple(c.name for c in constraint.columns))
        for table in Base.metadata.sorted_tables
        for constraint in table.constraints
        if isinstance(constraint, UniqueConstraint)
    }
    assert built == declared
    assert ("audit_log", ("prev_hash",)) not in built


_QUEUE_TRIGGERS = 9  # migration 0010's PostgreSQL trigger functions


def test_postgresql_queue_triggers_plan_their_statement_at_each_call(store_url: str) -> None:
    """PL/pgSQL kept the plan its first call made for the transition tables: after one large
    UPDATE of users (a first sync links every record at once) each one-row UPDATE ran the
    plan made for 100,000 rows (16–210 ms a row). Since migration 0014 every queue trigger
    runs its statement with EXECUTE, planned for the rows it has; and it still queues what
    changed after a large UPDATE in the same session."""
    if not store_url.startswith("postgresql"):
        pytest.skip("SQLite's queue triggers run per row")
    engine = Store(store_url).engine
    try:
        with engine.begin() as conn:
            bodies = (
                conn.exec_driver_sql(
                    "SELECT p.prosrc FROM pg_proc p JOIN pg_trigger t ON t.tgfoid = p.oid "
                    "WHERE p.proname LIKE 'changed\\_%%' AND p.pronamespace = "
                    "(SELECT oid FROM pg_namespace WHERE nspname = current_schema())"
                )
                .scalars()
                .all()
            )
            conn.exec_driver_sql(
                "INSERT INTO users (id, tracking, status, created_at, entra_object_id) "
                "SELECT i, 'tracked', 'active', '2026-06-01', 'obj-' || i "
                "FROM generate_series(1, 2000) AS i"
            )
        with engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM changed_objects")
            conn.exec_driver_sql("UPDATE users SET display_name = 'x'")  # queues nothing
            conn.exec_driver_sql(
                "UPDATE users SET tracking = 'untracked', untracked_by = 'entrasync' WHERE id = 7"
            )
            queued = conn.exec_driver_sql("SELECT object_id FROM changed_objects").scalars()
            assert list(queued) == ["obj-7"]
    finally:
        engine.dispose()
    assert len(bodies) == _QUEUE_TRIGGERS
    assert all("EXECUTE" in body for body in bodies)
