"""`python -m bench.first_sync --users N[,M…] [--backend sqlite|postgresql|both]`: the first
sync and the steady cycle only, at sizes where the whole bench takes too long.

Per size and store: the tenant of the full scenario's shape (`sized(N)`: 10 activity rows
per user), the store built by bench/storegen.py, the first cycle in a process of its own
(bench/initial_sync.py: `initial_sync_s`, `initial_sync_peak_rss_mb`, the whole process),
then five steady cycles in this process after one that settles the purges
(`steady_cycle_ms`, median).
Prints one JSON object. For the purge, churn and ingest figures use `python -m bench`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench import storegen
from bench.backends import postgres_backend, sqlite_backend
from bench.machine import describe
from bench.measure import initial_sync_in_subprocess
from bench.scenario import T0, sized
from bench.world import CLIENT_ID, GRAPH_PATH, SECRET, graph_factory, load, write_config
from entrasync.graph import MsalCaches
from entrasync.sim import EntraEmulator
from entrasync.sim.generate import generate_tenant
from entrasync.store.db import Store
from entrasync.sync.cycle import run_cycle

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')}  {message}", file=sys.stderr, flush=True)


def measure(users: int, backends: list[str], pg_url: str) -> dict[str, Any]:
    scenario = sized(users)
    gen = generate_tenant(
        scenario.users, dnt=scenario.dnt, delete=scenario.delete, nested=scenario.nested, seed=8
    )
    result: dict[str, Any] = {"users": users}
    with (
        tempfile.TemporaryDirectory(prefix="entrasync-first-") as tmp,
        EntraEmulator(gen.tenant, workdir=Path(tmp) / "emu") as emu,
    ):
        emu.register_app(CLIENT_ID, secret=SECRET)
        for name in backends:
            backend = sqlite_backend(Path(tmp)) if name == "sqlite" else postgres_backend(pg_url)
            try:
                _log(f"{users:,} users, {name}: building the store")
                started = time.perf_counter()
                storegen.build_store(backend.url, scenario, T0)
                build_s = time.perf_counter() - started
                config_path = write_config(Path(tmp) / f"{name}.toml", emu, gen, backend.url)
                _log(f"{users:,} users, {name}: first sync")
                first = initial_sync_in_subprocess(config_path, T0)
                if name == "postgresql":
                    storegen.analyze_pg(backend.url)  # as `python -m bench` does
                _log(f"{users:,} users, {name}: steady cycles")
                steady = _steady(config_path, emu)
                result[name] = {
                    "store_build_s": round(build_s, 1),
                    "initial_sync_s": round(first["seconds"], 1),
                    "initial_sync_peak_rss_mb": round(first["peak_rss_mb"], 1),
                    "initial_sync_rss_before_cycle_mb": round(first["rss_before_cycle_mb"], 1),
                    "initial_sync_applied": first["applied"],
                    **steady,
                }
            finally:
                backend.cleanup()
    return result


def _steady(config_path: Path, emu: EntraEmulator, rounds: int = 5) -> dict[str, Any]:
    config = load(config_path)
    store = Store(config.store.url)
    try:
        factory = graph_factory(config, MsalCaches())
        # As `python -m bench`: one cycle after the purge delay to settle (it purges the
        # Delete members), then the measured ones.
        now = T0 + timedelta(hours=26)
        run_cycle(store, config, factory, now)
        times, requests = [], []
        for i in range(rounds):
            emu.log.clear()
            started = time.perf_counter()
            run_cycle(store, config, factory, now + timedelta(minutes=5 * (i + 1)))
            times.append((time.perf_counter() - started) * 1000)
            requests.append(emu.log.count(GRAPH_PATH))
    finally:
        store.engine.dispose()
    return {
        "steady_cycle_ms": round(statistics.median(times), 1),
        "steady_cycle_ms_max": round(max(times), 1),
        "steady_cycle_graph_requests": max(requests),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.first_sync", description=__doc__)
    parser.add_argument("--users", required=True, help="sizes, e.g. 100000,1000000")
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="sqlite")
    parser.add_argument("--postgres", default=DEFAULT_PG, metavar="URL")
    args = parser.parse_args(argv)
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    sizes = sorted({int(n.replace("_", "")) for n in args.users.split(",") if n.strip()})
    began = time.perf_counter()
    results = [measure(n, backends, args.postgres) for n in sizes]
    out = {
        "sizes": results,
        "machine": describe(args.postgres if "postgresql" in backends else None),
        "bench_s": round(time.perf_counter() - began, 1),
    }
    json.dump(out, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
