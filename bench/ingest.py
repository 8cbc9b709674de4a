"""The ingest figures: `ingest_reports` against a raw executemany INSERT of the same rows
into an identical copy of the store."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

from bench import storegen
from bench.backends import Backend
from bench.scenario import T0, Scenario
from entrasync.domain.reports import parse_reports
from entrasync.services.ingest import ingest_reports
from entrasync.sim.generate import GeneratedTenant
from entrasync.store.db import Store
from entrasync.store.driver import on_postgresql


def _watched(gen: GeneratedTenant) -> set[str]:
    return {
        m
        for g in (gen.dnt_group, gen.delete_group, gen.nested_group)
        for m in gen.tenant.groups[g].members
    }


def ingest_lines(
    gen: GeneratedTenant, scenario: Scenario, week: int = 0
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Agent reports (JSON lines) of tracked, unwatched users on their domain agent, and
    the activity rows they amount to (for the raw insert). Another `week` gives other
    events (ingesting the same ones again stores nothing: ingestion is idempotent)."""
    watched = _watched(gen)
    per = scenario.ingest_events_per_report
    reports = max(1, scenario.ingest_rows // per)
    lines: list[str] = []
    rows: list[tuple[Any, ...]] = []
    received = T0 + timedelta(hours=27)
    n = 0
    while len(lines) < reports:
        index = n % scenario.users
        n += 1
        if gen.user_ids[index] in watched:
            continue
        day = T0 + timedelta(days=1 + 7 * week + n // scenario.users)
        events = []
        for k in range(per):
            start = day + timedelta(minutes=5 * k)
            app, title = storegen.APPS[k % 5], f"Report {k}"
            events.append(
                {
                    "start": start.isoformat().replace("+00:00", "Z"),
                    "duration_s": 300,
                    "app": app,
                    "title": title,
                }
            )
            rows.append((index + 1, f"LAPTOP-{index:06d}", start, 300, app, title, received))
        lines.append(
            json.dumps(
                {
                    "device": f"LAPTOP-{index:06d}",
                    "logon": storegen.domain_logon_of(index).upper(),
                    "upn": storegen.upn_of(index),
                    "events": events,
                }
            )
        )
    return lines, rows


def measure_ingest(
    store: Store,
    backend: Backend,
    config: Any,
    gen: GeneratedTenant,
    scenario: Scenario,
    week: int = 0,
) -> dict[str, Any]:
    """`ingest_reports` on parsed reports vs the same rows inserted raw: both start from
    Python values in memory. Parsing the JSON lines is timed on its own (`ingest_parse_s`)."""
    lines, rows = ingest_lines(gen, scenario, week)
    now = T0 + timedelta(hours=27)
    started = time.perf_counter()
    reports = parse_reports(lines)
    parse_s = time.perf_counter() - started
    started = time.perf_counter()
    summary = ingest_reports(store, config, reports, now, source="bench")
    ingest_s = time.perf_counter() - started
    assert summary.rows_stored == len(rows), (summary, len(rows))
    copy = Store(backend.copy_url)
    try:
        raw_s = raw_insert(copy, rows)
    finally:
        copy.engine.dispose()
    return {
        "ingest_rows": len(rows),
        "ingest_s": round(ingest_s, 3),
        "ingest_parse_s": round(parse_s, 3),
        "ingest_rows_per_s": round(len(rows) / ingest_s),
        "ingest_with_parse_rows_per_s": round(len(rows) / (ingest_s + parse_s)),
        "ingest_raw_insert_s": round(raw_s, 3),
        "ingest_raw_insert_rows_per_s": round(len(rows) / raw_s),
        "ingest_vs_raw_insert_ratio": round(ingest_s / raw_s, 3),
    }


PSYCOPG_PREPARE_THRESHOLD = 5  # psycopg's default: a raw insert as a plain connection runs it


def raw_insert(store: Store, rows: list[tuple[Any, ...]]) -> float:
    """The same activity rows with one `executemany` INSERT on the DB-API connection, in
    one transaction. On SQLite the timestamps are formatted to its text form inside the
    timing (the database needs them as text); psycopg adapts datetimes itself."""
    columns = "agent_id, device, start, duration_s, app, title, received_at"
    sqlite = not on_postgresql(store.engine)
    marks = ", ".join(["?" if sqlite else "%s"] * 7)
    raw = store.engine.raw_connection()
    driver: Any = raw.driver_connection
    # The store's connections prepare nothing (store/engines.py); a plain psycopg connection
    # prepares a statement run five times, and its executemany relies on that.
    prepare = getattr(driver, "prepare_threshold", None)
    if not sqlite:
        driver.prepare_threshold = PSYCOPG_PREPARE_THRESHOLD
    try:
        cursor = raw.cursor()
        started = time.perf_counter()
        if sqlite:
            rows = [
                (a, d, s.strftime(storegen.SQLITE_TIME), u, p, t, r.strftime(storegen.SQLITE_TIME))
                for a, d, s, u, p, t, r in rows
            ]
            cursor.execute("BEGIN IMMEDIATE")
        cursor.executemany(f"INSERT INTO activity ({columns}) VALUES ({marks})", rows)
        if sqlite:
            cursor.execute("COMMIT")
        else:
            raw.commit()
        return time.perf_counter() - started
    finally:
        if not sqlite:
            driver.prepare_threshold = prepare
        raw.close()
