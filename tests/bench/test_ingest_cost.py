"""What ingest costs the store does not grow with the store (issue 16): the same agent reports
ingested into a store ten times larger run the same statements, and on SQLite the same amount
of work (virtual-machine steps, counted with a progress handler), with no full scan of a table
that grows with the tenant. Every record is linked to a mirrored Entra user first (as after an
initial sync), so the identifier-reuse lookups read mirror tables of the tenant's size too.

On the commit before this test, the identifier lookup (`(kind, value) IN (VALUES …)`) and the
mirror-key lookup were full scans of `identifiers` and `entra_keys` on SQLite."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from storecost import Cost, measured
from testkit import BACKENDS

from bench import storegen
from bench.ingest_only import link_to_entra
from bench.scenario import T0, sized
from entrasync.config import Config, load_config
from entrasync.domain.reports import AgentReport, parse_reports
from entrasync.services.ingest import IngestSummary, ingest_reports
from entrasync.store.db import Store

SIZES = (150, 1500)
REPORTING = 30  # users that report, the same ones at both sizes
EVENTS = 4
# Tables whose size follows the tenant or its history: never read whole by ingest.
BIG = ("users", "identifiers", "agents", "agent_logons", "activity", "entra_users", "entra_keys")


def _reports(week: int) -> list[AgentReport]:
    """Reports of the first users on their domain agents, and of one logon nobody has
    (a new record and agent): the same at every store size."""
    day = T0 + timedelta(days=1 + 7 * week)
    lines = []
    for n in [*range(REPORTING), 10_000_000]:
        known = n < REPORTING
        events = [
            {
                "start": (day + timedelta(minutes=5 * k)).isoformat().replace("+00:00", "Z"),
                "duration_s": 300,
                "app": storegen.APPS[k % len(storegen.APPS)],
                "title": f"Report {k}",
            }
            for k in range(EVENTS)
        ]
        lines.append(
            json.dumps(
                {
                    "device": f"LAPTOP-{n:06d}",
                    "logon": storegen.domain_logon_of(n).upper() if known else "NEW\\nobody",
                    "upn": storegen.upn_of(n) if known else "nobody@example.org",
                    "events": events,
                }
            )
        )
    return parse_reports(lines)


@dataclass
class _Sized:
    store: Store
    config: Config


@pytest.fixture(params=BACKENDS)
def sized_store(
    request: pytest.FixtureRequest, make_store_url: Any, tmp_path: Path
) -> Iterator[Any]:
    """Factory: a store of `users` users, every record linked to a mirrored Entra user."""
    backend = request.param
    opened: list[Store] = []

    def make(users: int) -> _Sized:
        url = make_store_url(backend)
        storegen.build_store(url, sized(users, rows_per_user=4), T0)
        link_to_entra(url)
        if backend == "postgresql":
            storegen.analyze_pg(url)
        path = tmp_path / f"es-{users}.toml"
        path.write_text(
            f'[store]\nurl = "{url}"\n\n[account]\npurchased_licenses = 10000000\n',
            encoding="utf-8",
        )
        store = Store(url)
        opened.append(store)
        return _Sized(store, load_config(path))

    yield make
    for store in opened:
        store.engine.dispose()


def _ingest(world: _Sized, week: int) -> tuple[Cost, IngestSummary]:
    reports = _reports(week)
    now = T0 + timedelta(days=2 + 7 * week)
    done: list[IngestSummary] = []
    cost = measured(
        world.store,
        lambda: done.append(ingest_reports(world.store, world.config, reports, now, "test")),
    )
    return cost, done[0]


def test_ingest_costs_the_same_on_a_store_ten_times_larger(sized_store: Any) -> None:
    small, large = sized_store(SIZES[0]), sized_store(SIZES[1])
    rows = (REPORTING + 1) * EVENTS
    for week in (0, 1):  # the second ingest: every reporting user holds the new record's data
        cost_s, summary_s = _ingest(small, week)
        cost_l, summary_l = _ingest(large, week)
        assert summary_s.rows_stored == summary_l.rows_stored == rows
        assert summary_l.users_created == (1 if week == 0 else 0)
        assert len(cost_l.statements) == len(cost_s.statements)
        if small.store.dialect != "sqlite":
            continue
        # ten times the store, (almost) the same work: a scan of the identifiers would cost
        # about ten times as much here
        assert cost_l.steps <= cost_s.steps * 1.25 + 20, (week, cost_s.steps, cost_l.steps)
        assert cost_l.full_scans(large.store, BIG) == Counter()


def test_events_are_stored_once_and_in_file_order(sized_store: Any) -> None:
    """The bulk path (PostgreSQL: COPY into a stage, one INSERT … SELECT) keeps what the
    row-by-row insert did: rows get ids in the order of the file, an event repeated in the
    file is stored once, and the rowcount counts new rows only."""
    world = sized_store(SIZES[0])
    day = T0 + timedelta(days=30)
    titles = ["zulu", "alpha", "mike", "alpha", None, "bravo"]  # "alpha" twice: one event
    line = {
        "device": "LAPTOP-000001",
        "logon": storegen.domain_logon_of(1),
        "upn": storegen.upn_of(1),
        "events": [
            {
                "start": day.isoformat().replace("+00:00", "Z"),
                "duration_s": 4242,
                "app": "excel.exe",
                **({"title": title} if title is not None else {}),
            }
            for title in titles
        ],
    }
    reports = parse_reports([json.dumps(line)])
    first = ingest_reports(world.store, world.config, reports, day, "test")
    again = ingest_reports(world.store, world.config, reports, day, "test")
    assert (first.rows_stored, first.rows_already_stored) == (5, 1)
    assert (again.rows_stored, again.rows_already_stored) == (0, 6)
    with world.store.engine.connect() as conn:
        stored = conn.exec_driver_sql(
            "SELECT title FROM activity WHERE agent_id = 2 AND duration_s = 4242 ORDER BY id"
        ).all()
    assert [title for (title,) in stored] == ["zulu", "alpha", "mike", None, "bravo"]
