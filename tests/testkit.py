"""Helpers shared by the test suites (import them as `from testkit import …`; a module
named `conftest` is ambiguous once test folders have their own conftest.py)."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, MetaData, create_engine, select, text

PG_ENV = "ENTRASYNC_TEST_DATABASE_URL"
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def write_config(path: Path, store_url: str, extra: str = "") -> Path:
    path.write_text(f'[store]\nurl = "{store_url}"\n{extra}', encoding="utf-8")
    return path


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def report(
    logon: str,
    device: str,
    *,
    upn: str | None = None,
    email: str | None = None,
    employee_id: str | None = None,
    events: int = 1,
    start: str = "2026-06-01T09:00:00Z",
) -> str:
    """One agent report line (JSON) as the agents send it."""
    body: dict[str, Any] = {"device": device, "logon": logon}
    if upn:
        body["upn"] = upn
    if email:
        body["email"] = email
    if employee_id:
        body["employee_id"] = employee_id
    body["events"] = [
        {"start": start, "duration_s": 60 * (i + 1), "app": "excel.exe", "title": f"Book{i}.xlsx"}
        for i in range(events)
    ]
    return json.dumps(body)


def dump_store(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in primary-key order (rows as tuples of column values)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            out: dict[str, list[tuple[Any, ...]]] = {}
            metadata = MetaData()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # expression indexes are not reflected
                metadata.reflect(conn)  # the tables the store has, not the ones the code knows
            for table in metadata.sorted_tables:
                order = list(table.primary_key.columns) or list(table.columns)
                out[table.name] = [tuple(r) for r in conn.execute(select(table).order_by(*order))]
            return out
    finally:
        engine.dispose()


def sql(url: str, statement: str, **params: Any) -> None:
    """Run one statement by hand, outside entrasync (as a tampering admin would)."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(statement), params)
    finally:
        engine.dispose()


def sessions_named(conn: Connection, app: str, where: str = "TRUE") -> int:
    """PostgreSQL sessions whose `application_name` is `app` (the test's own processes: the
    server may be shared with other tests or a bench) and that meet `where`, a condition on
    `pg_stat_activity`'s columns."""
    statement = f"SELECT count(*) FROM pg_stat_activity WHERE application_name = :app AND ({where})"
    return int(conn.execute(text(statement), {"app": app}).scalar_one())
