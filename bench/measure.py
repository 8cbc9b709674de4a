"""The measurements of one backend: initial sync, purge, steady cycles, a churn cycle, ingest."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bench import storegen
from bench.backends import Backend, timed
from bench.ingest import measure_ingest
from bench.purge import measure_purge, purge_targets
from bench.scenario import T0, Scenario
from bench.world import GRAPH_PATH, RequestModel, graph_factory, load, write_config
from entrasync.config import Config
from entrasync.graph import MsalCaches
from entrasync.sim import EntraEmulator
from entrasync.sim.generate import GeneratedTenant
from entrasync.store.db import Store
from entrasync.sync.cycle import run_cycle

REPO = Path(__file__).resolve().parent.parent
Log = Callable[[str], None]


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
    t = backend.timings
    log(f"[{backend.name}] building the store ({scenario.activity_rows:,} activity rows)")
    with timed(t, "store_build_s"):
        storegen.build_store(backend.url, scenario, T0)
    config_path = write_config(workdir / f"entrasync-{backend.name}.toml", emu, gen, backend.url)

    log(f"[{backend.name}] initial sync (subprocess)")
    figures = _initial(config_path, emu, model)
    if backend.name == "postgresql":
        storegen.analyze_pg(backend.url)
    config = load(config_path)
    store = Store(backend.url)
    try:
        log(f"[{backend.name}] copying the store twice (the raw-SQL sides; the purge runs on both)")
        with timed(t, "store_copy_s"):
            store.engine.dispose()
            backend.make_copy()
            backend.make_twin()
        log(f"[{backend.name}] purging {scenario.purge_users} users: entrasync vs raw SQL")
        targets, warm_up = purge_targets(store, gen, scenario.purge_users)
        figures.update(measure_purge(store, backend, config, targets, warm_up))

        log(f"[{backend.name}] steady cycles")
        caches = MsalCaches()  # the daemon keeps its token across cycles
        figures.update(_steady(store, config, emu, model, caches))

        log(f"[{backend.name}] churn cycle: {scenario.churn:,} users join the DNT group")
        figures.update(_churn(store, config, emu, gen, scenario, caches))

        log(f"[{backend.name}] ingesting {scenario.ingest_rows:,} rows: entrasync vs raw insert")
        figures.update(_ingest(store, backend, config, gen, scenario))
    finally:
        store.engine.dispose()
    figures["store_build_s"] = round(t["store_build_s"], 1)
    return figures


def _initial(config_path: Path, emu: EntraEmulator, model: RequestModel) -> dict[str, Any]:
    emu.log.clear()
    initial = initial_sync_in_subprocess(config_path, T0)
    requests = emu.log.count(GRAPH_PATH)
    return {
        "initial_sync_s": round(initial["seconds"], 2),
        "initial_sync_peak_rss_mb": round(initial["peak_rss_mb"], 1),
        "initial_sync_rss_before_cycle_mb": round(initial["rss_before_cycle_mb"], 1),
        "initial_sync_graph_requests": requests,
        "initial_sync_min_requests": model.initial_min,
        "initial_sync_requests_vs_min_ratio": round(requests / model.initial_min, 3),
        "initial_sync_applied": initial["applied"],
    }


def initial_sync_in_subprocess(config_path: Path, now: datetime) -> dict[str, Any]:
    """The first cycle in a process of its own (bench/initial_sync.py): its peak RSS is its own."""
    return run_json("bench.initial_sync", str(config_path), now.isoformat())


def run_json(module: str, *args: str) -> dict[str, Any]:
    """`python -m MODULE ARGS…` in a process of its own; its stdout, one JSON object."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-m", module, *args],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def _steady(
    store: Store,
    config: Config,
    emu: EntraEmulator,
    model: RequestModel,
    caches: MsalCaches,
    rounds: int = 5,
) -> dict[str, Any]:
    now = T0 + timedelta(hours=26)
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


def _ingest(
    store: Store,
    backend: Backend,
    config: Config,
    gen: GeneratedTenant,
    scenario: Scenario,
    rounds: int = 3,
) -> dict[str, Any]:
    """`measure_ingest` over `rounds` weeks of new rows (the same rows again would store
    nothing): the figures of the round with the median ingest time, and the medians."""
    runs = [measure_ingest(store, backend, config, gen, scenario, week) for week in range(rounds)]
    middle = sorted(runs, key=lambda r: r["ingest_s"])[rounds // 2]
    ratios = [r["ingest_vs_raw_insert_ratio"] for r in runs]
    return {
        **middle,
        "ingest_vs_raw_insert_ratio": round(statistics.median(ratios), 3),
        "ingest_rounds": rounds,
    }


def _churn_users(gen: GeneratedTenant, count: int) -> list[str]:
    """Tracked users in no watched group, from the end of the tenant (ingest reports come
    from its start)."""
    watched = {
        m
        for g in (gen.dnt_group, gen.delete_group, gen.nested_group)
        for m in gen.tenant.groups[g].members
    }
    return [u for u in reversed(gen.user_ids) if u not in watched][:count]


def _churn(
    store: Store,
    config: Config,
    emu: EntraEmulator,
    gen: GeneratedTenant,
    scenario: Scenario,
    caches: MsalCaches,
    rounds: int = 3,
) -> dict[str, Any]:
    """Cycles in which `scenario.churn` users joined the DNT group (each untracked, in a
    transaction of its own with its audit record), the median of `rounds`; after each, they
    leave it again and an unmeasured cycle tracks them again, so the tenant and store are as
    before."""
    movers = _churn_users(gen, scenario.churn)
    factory = graph_factory(config, caches)
    times, requests, actions = [], [], 0
    for i in range(rounds):
        now = T0 + timedelta(hours=27 + i)
        gen.tenant.add_members(gen.dnt_group, movers)
        emu.log.clear()
        started = time.perf_counter()
        result = run_cycle(store, config, factory, now)
        times.append((time.perf_counter() - started) * 1000)
        requests.append(emu.log.count(GRAPH_PATH))
        for member in movers:
            gen.tenant.remove_member(gen.dnt_group, member)
        back = run_cycle(store, config, factory, now + timedelta(minutes=5))
        assert result.applied["untrack"] == len(movers), result.applied
        assert back.applied["retrack"] == len(movers), back.applied
        actions = sum(result.applied.values())
    return {
        "churn_changes": len(movers),
        "churn_cycle_ms": round(statistics.median(times), 1),
        "churn_cycle_ms_max": round(max(times), 1),
        "churn_cycle_graph_requests": max(requests),
        "churn_cycle_actions": actions,
    }
