"""The measurements of one backend: initial sync, steady cycles, purge, ingest."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bench import storegen
from bench.scenario import Scenario
from bench.world import GRAPH_PATH, RequestModel, graph_factory, load, write_config
from entrasync.domain.actions import ActionKind
from entrasync.domain.planning import PlannedAction
from entrasync.domain.reports import parse_reports
from entrasync.graph import MsalCaches
from entrasync.services.ingest import ingest_reports
from entrasync.sim import EntraEmulator
from entrasync.sim.generate import GeneratedTenant
from entrasync.store.db import Store
from entrasync.sync.apply import PURGE_BATCH, ActionApplier
from entrasync.sync.cycle import run_cycle

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parent.parent
Log = Callable[[str], None]


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


def run_backend(
    backend: Backend,
    scenario: Scenario,
    gen: GeneratedTenant,
    emu: EntraEmulator,
    model: RequestModel,
    workdir: Path,
    log: Log,
) -> dict[str, Any]:
    figures: dict[str, Any] = {"backend": backend.name}
    try:
        figures.update(_measure(backend, scenario, gen, emu, model, workdir, log))
    finally:
        backend.cleanup()
    return figures


def _measure(
    backend: Backend,
    scenario: Scenario,
    gen: GeneratedTenant,
    emu: EntraEmulator,
    model: RequestModel,
    workdir: Path,
    log: Log,
) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    t = backend.timings
    log(f"[{backend.name}] building the store ({scenario.activity_rows:,} activity rows)")
    with timed(t, "store_build_s"):
        storegen.build_store(backend.url, scenario, T0)
    config_path = write_config(workdir / f"entrasync-{backend.name}.toml", emu, gen, backend.url)

    log(f"[{backend.name}] initial sync (subprocess)")
    emu.log.clear()
    initial = _initial_sync(config_path, T0)
    requests = emu.log.count(GRAPH_PATH)
    figures.update(
        initial_sync_s=round(initial["seconds"], 2),
        initial_sync_peak_rss_mb=round(initial["peak_rss_mb"], 1),
        initial_sync_rss_before_cycle_mb=round(initial["rss_before_cycle_mb"], 1),
        initial_sync_graph_requests=requests,
        initial_sync_min_requests=model.initial_min,
        initial_sync_requests_vs_min_ratio=round(requests / model.initial_min, 3),
        initial_sync_applied=initial["applied"],
    )

    if backend.name == "postgresql":
        storegen.analyze_pg(backend.url)
    config = load(config_path)
    store = Store(backend.url)
    try:
        log(f"[{backend.name}] copying the store for the raw-SQL side")
        with timed(t, "store_copy_s"):
            store.engine.dispose()
            backend.make_copy()
        log(f"[{backend.name}] purging {scenario.purge_users} users: entrasync vs raw SQL")
        figures.update(_purge(store, backend, config, gen, scenario))

        log(f"[{backend.name}] steady cycles")
        figures.update(_steady(store, config, emu, model))

        log(f"[{backend.name}] ingesting {scenario.ingest_rows:,} rows: entrasync vs raw insert")
        figures.update(_ingest(store, backend, config, gen, scenario))
    finally:
        store.engine.dispose()
    figures["store_build_s"] = round(t["store_build_s"], 1)
    return figures


def _initial_sync(config_path: Path, now: datetime) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-m", "bench.initial_sync", str(config_path), now.isoformat()],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


# -- steady cycles -------------------------------------------------------------------------


def _steady(
    store: Store, config: Any, emu: EntraEmulator, model: RequestModel, rounds: int = 5
) -> dict[str, Any]:
    now = T0 + timedelta(hours=26)
    caches = MsalCaches()  # the daemon keeps its token across cycles
    # One cycle to settle (e.g. compliance bookkeeping after the purge), then the measured ones.
    factory = graph_factory(config, caches)
    run_cycle(store, config, factory, now)
    times, requests, applied = [], [], 0
    for i in range(rounds):
        emu.log.clear()
        started = time.perf_counter()
        result = run_cycle(store, config, factory, now + timedelta(minutes=5 * (i + 1)))
        times.append((time.perf_counter() - started) * 1000)
        requests.append(emu.log.count(GRAPH_PATH))
        applied += sum(result.applied.values())
    return {
        "steady_cycle_graph_requests": max(requests),
        "steady_cycle_min_requests": model.streams,
        "steady_cycle_login_requests": emu.log.count(r"/oauth2/"),
        "steady_cycle_ms": round(statistics.median(times), 1),
        "steady_cycle_ms_max": round(max(times), 1),
        "steady_cycle_actions": applied,
        "full_listing_cycle_graph_requests": model.full_listing,
    }


# -- purge ---------------------------------------------------------------------------------


def _delete_members(store: Store, gen: GeneratedTenant, limit: int) -> list[tuple[int, str]]:
    """(store user id, object id) of Delete-group members, linked by the initial sync."""
    members = sorted(gen.tenant.groups[gen.delete_group].members)[:limit]
    with store.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT id, entra_object_id FROM users WHERE entra_object_id IS NOT NULL")
        ).all()
    by_object = {str(o): int(i) for i, o in rows}
    return [(by_object[m], m) for m in members if m in by_object]


def _purge(
    store: Store, backend: Backend, config: Any, gen: GeneratedTenant, scenario: Scenario
) -> dict[str, Any]:
    targets = _delete_members(store, gen, scenario.purge_users)
    user_ids = [uid for uid, _ in targets]
    now = T0 + timedelta(hours=25)
    rows = _count_rows(store.url, user_ids)

    copy = Store(backend.copy_url)
    try:
        _checkpoint(copy)
        raw_s = _raw_purge_batched(copy, user_ids)
    finally:
        copy.engine.dispose()

    applier = ActionApplier(store, config, str(uuid.uuid4()), now)
    reason = "member of the Delete group (bench)"
    actions = [PlannedAction(ActionKind.PURGE, reason, uid, obj) for uid, obj in targets]
    _checkpoint(store)
    started = time.perf_counter()
    done = applier.apply_purges(actions)
    entrasync_s = time.perf_counter() - started
    left = _count_rows(store.url, user_ids)
    assert len(done) == len(targets) and left == 0, (len(done), left)
    return {
        "purge_users": len(targets),
        "purge_rows": rows,
        "purge_batch_users": PURGE_BATCH,
        "purge_entrasync_s": round(entrasync_s, 3),
        "purge_raw_sql_s": round(raw_s, 3),
        "purge_entrasync_ms_per_user": round(entrasync_s / len(targets) * 1000, 3),
        "purge_vs_raw_sql_ratio": round(entrasync_s / raw_s, 3),
    }


def _checkpoint(store: Store) -> None:
    """On PostgreSQL both sides start with the WAL flushed: the copy was just written, and a
    checkpoint falling inside one side's timing made that side up to twice as slow."""
    if store.dialect != "postgresql":
        return
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("CHECKPOINT"))


def _count_rows(url: str, user_ids: list[int]) -> int:
    store = Store(url)
    try:
        with store.engine.connect() as conn:
            total = 0
            for start in range(0, len(user_ids), 500):
                chunk = ",".join(str(u) for u in user_ids[start : start + 500])
                total += int(
                    conn.execute(
                        text(
                            "SELECT count(*) FROM activity WHERE agent_id IN "
                            f"(SELECT id FROM agents WHERE user_id IN ({chunk}))"
                        )
                    ).scalar_one()
                )
            return total
    finally:
        store.engine.dispose()


_RAW_PURGE = (
    "DELETE FROM activity WHERE agent_id IN (SELECT id FROM agents WHERE user_id IN ({ids}))",
    "DELETE FROM agent_logons WHERE agent_id IN (SELECT id FROM agents WHERE user_id IN ({ids}))",
    "DELETE FROM agents WHERE user_id IN ({ids})",
    "UPDATE users SET tracking = 'untracked', untracked_by = 'entrasync' WHERE id IN ({ids})",
)


def _raw_purge_batched(store: Store, user_ids: list[int]) -> float:
    """The same rows deleted with plain SQL in the same transactions as entrasync: four
    set-based statements per batch of users, one committed transaction per batch."""
    sqlite = store.dialect == "sqlite"
    raw = store.engine.raw_connection()
    try:
        cursor = raw.cursor()
        started = time.perf_counter()
        for start in range(0, len(user_ids), PURGE_BATCH):
            ids = ",".join(str(u) for u in user_ids[start : start + PURGE_BATCH])
            if sqlite:
                cursor.execute("BEGIN IMMEDIATE")
            for statement in _RAW_PURGE:
                cursor.execute(statement.format(ids=ids))
            cursor.execute("COMMIT") if sqlite else raw.commit()
        return time.perf_counter() - started
    finally:
        raw.close()


# -- ingest --------------------------------------------------------------------------------


def _ingest_lines(
    gen: GeneratedTenant, scenario: Scenario, week: int = 0
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Agent reports (JSON lines) of tracked, unwatched users on their domain agent, and
    the activity rows they amount to (for the raw insert). Another `week` gives other
    events (ingesting the same ones again stores nothing: ingestion is idempotent)."""
    watched = {
        m
        for g in (gen.dnt_group, gen.delete_group, gen.nested_group)
        for m in gen.tenant.groups[g].members
    }
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
            events.append(
                {
                    "start": start.isoformat().replace("+00:00", "Z"),
                    "duration_s": 300,
                    "app": storegen.APPS[k % 5],
                    "title": f"Report {k}",
                }
            )
            rows.append(
                (
                    index + 1,
                    f"LAPTOP-{index:06d}",
                    start,
                    300,
                    storegen.APPS[k % 5],
                    f"Report {k}",
                    received,
                )
            )
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


def _ingest(
    store: Store,
    backend: Backend,
    config: Any,
    gen: GeneratedTenant,
    scenario: Scenario,
    week: int = 0,
) -> dict[str, Any]:
    """`ingest_reports` on parsed reports vs the same rows inserted raw: both start from
    Python values in memory. Parsing the JSON lines is timed on its own (`ingest_parse_s`)."""
    lines, rows = _ingest_lines(gen, scenario, week)
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
        raw_s = _raw_insert(copy, rows)
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


def _raw_insert(store: Store, rows: list[tuple[Any, ...]]) -> float:
    """The same activity rows with one `executemany` INSERT on the DB-API connection, in
    one transaction. On SQLite the timestamps are formatted to its text form inside the
    timing (the database needs them as text); psycopg adapts datetimes itself."""
    columns = "agent_id, device, start, duration_s, app, title, received_at"
    sqlite = store.dialect == "sqlite"
    marks = ", ".join(["?" if sqlite else "%s"] * 7)
    raw = store.engine.raw_connection()
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
        raw.close()
