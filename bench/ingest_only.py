"""`python -m bench.ingest_only [--quick] [--postgres] [--rounds N]`: only the ingest figures.

The ingest part of `python -m bench` (entrasync's `ingest_reports` against a raw executemany
INSERT of the same rows into an identical copy of the store), repeated `--rounds` times on
one store with other events each round, without the Graph emulator, the initial sync, the
purge or the steady cycles. For comparing changes to the ingest path when a full run is too
long or the machine too noisy: prints one JSON object (every round, and the median ratio).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import storegen
from bench.backends import postgres_backend, sqlite_backend
from bench.ingest import measure_ingest
from bench.machine import describe
from bench.scenario import FULL, QUICK, SCENARIOS, T0, Scenario
from entrasync.config import load_config
from entrasync.sim.generate import generate_tenant
from entrasync.store.db import Store

PG_ENV = "ENTRASYNC_TEST_DATABASE_URL"


def _backend_rounds(backend: Any, scenario: Scenario, gen: Any, rounds: int, tmp: Path) -> Any:
    try:
        storegen.build_store(backend.url, scenario, T0)
        if backend.name == "postgresql":
            storegen.analyze_pg(backend.url)
        backend.make_copy()
        config_path = tmp / f"entrasync-{backend.name}.toml"
        config_path.write_text(
            f'[store]\nurl = "{backend.url}"\n\n[account]\npurchased_licenses = 10000000\n',
            encoding="utf-8",
        )
        config = load_config(config_path)
        store = Store(backend.url)
        try:
            results = []
            for week in range(rounds):
                figures = measure_ingest(store, backend, config, gen, scenario, week=week)
                print(f"[{backend.name}] round {week + 1}: {figures}", file=sys.stderr, flush=True)
                results.append(figures)
        finally:
            store.engine.dispose()
        ratios = [r["ingest_vs_raw_insert_ratio"] for r in results]
        return {"rounds": results, "median_ratio": round(statistics.median(ratios), 3)}
    finally:
        backend.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest_only")
    parser.add_argument("--quick", action="store_true", help="the quick scenario's store")
    parser.add_argument("--scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres", default=os.environ.get(PG_ENV) or None, metavar="URL")
    parser.add_argument("--no-sqlite", action="store_true")
    args = parser.parse_args(argv)
    scenario = SCENARIOS[args.scenario] if args.scenario else QUICK if args.quick else FULL
    began = time.perf_counter()
    gen = generate_tenant(
        scenario.users, dnt=scenario.dnt, delete=scenario.delete, nested=scenario.nested, seed=8
    )
    result: dict[str, Any] = {"scenario": scenario.name}
    with tempfile.TemporaryDirectory(prefix="entrasync-bench-ingest-") as tmp:
        if not args.no_sqlite:
            result["sqlite"] = _backend_rounds(
                sqlite_backend(Path(tmp)), scenario, gen, args.rounds, Path(tmp)
            )
        if args.postgres:
            result["postgresql"] = _backend_rounds(
                postgres_backend(args.postgres), scenario, gen, args.rounds, Path(tmp)
            )
    result["machine"] = describe(args.postgres)
    result["bench_s"] = round(time.perf_counter() - began, 1)
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
