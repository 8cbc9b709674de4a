"""`python -m bench.purge_only [--users N] [--postgres URL] [--no-sqlite] [--rounds N]`: only
the purge figures.

The purge part of `python -m bench` (entrasync's `apply_purges` against raw SQL deleting the
same rows, in the same transactions, both sides on copies of the store), repeated `--rounds`
times on one store with other users each round, without the Graph emulator, the initial sync
or the steady cycles. For comparing changes to the purge path when a full run is too long or
the machine too noisy: prints one JSON object (every round, and the median ratio). The store
is the one of `python -m bench --users N` (default 100,000), its records linked to Entra as
the initial sync would leave them (`bench.ingest_only.link_to_entra`).
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

from sqlalchemy import text

from bench.backends import Backend, postgres_backend, sqlite_backend
from bench.ingest_only import PG_ENV, prepare_store
from bench.machine import describe
from bench.purge import measure_purge
from bench.scenario import Scenario, sized
from entrasync.store.db import Store


def _targets(store: Store, count: int, rounds: int) -> list[list[tuple[int, str]]]:
    """`rounds` disjoint sets of `count` users holding agents, spread over the store, and
    after them one more user per round (the round's warm-up, `measure_purge`)."""
    with store.engine.connect() as conn:
        ids = [
            int(i)
            for (i,) in conn.execute(text("SELECT DISTINCT user_id FROM agents ORDER BY user_id"))
        ]
    step = max(1, len(ids) // ((count + 1) * rounds))
    picked = ids[::step][: (count + 1) * rounds]
    return [
        [(uid, f"obj-{uid}") for uid in picked[r * count : (r + 1) * count]]
        + [(picked[count * rounds + r], "warm-up")]
        for r in range(rounds)
    ]


def _backend_rounds(backend: Backend, scenario: Scenario, rounds: int, tmp: Path) -> Any:
    try:
        config, build_s = prepare_store(backend, scenario, tmp)
        backend.make_twin()
        store = Store(backend.url)
        try:
            results = []
            for number, picked in enumerate(_targets(store, scenario.purge_users, rounds), 1):
                *targets, warm_up = picked
                figures = measure_purge(store, backend, config, targets, warm_up)
                print(f"[{backend.name}] round {number}: {figures}", file=sys.stderr, flush=True)
                results.append(figures)
        finally:
            store.engine.dispose()
        ratios = [r["purge_vs_raw_sql_ratio"] for r in results]
        return {
            "rounds": results,
            "median_ratio": round(statistics.median(ratios), 3),
            "median_purge_s": round(statistics.median(r["purge_entrasync_s"] for r in results), 3),
            "store_build_s": build_s,
        }
    finally:
        backend.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.purge_only")
    parser.add_argument("--users", type=int, default=100_000, metavar="N")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres", default=os.environ.get(PG_ENV) or None, metavar="URL")
    parser.add_argument("--no-sqlite", action="store_true")
    args = parser.parse_args(argv)
    scenario = sized(args.users)
    began = time.perf_counter()
    result: dict[str, Any] = {"users": scenario.users, "purge_users": scenario.purge_users}
    with tempfile.TemporaryDirectory(prefix="entrasync-bench-purge-") as tmp:
        if not args.no_sqlite:
            result["sqlite"] = _backend_rounds(
                sqlite_backend(Path(tmp)), scenario, args.rounds, Path(tmp)
            )
        if args.postgres:
            result["postgresql"] = _backend_rounds(
                postgres_backend(args.postgres), scenario, args.rounds, Path(tmp)
            )
    result["machine"] = describe(args.postgres)
    result["bench_s"] = round(time.perf_counter() - began, 1)
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
