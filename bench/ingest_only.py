"""`python -m bench.ingest_only [--quick | --users N] [--postgres] [--rounds N]`: only the ingest
figures.

The ingest part of `python -m bench` (entrasync's `ingest_reports` against a raw executemany
INSERT of the same rows into an identical copy of the store), repeated `--rounds` times on
one store with other events each round, without the Graph emulator, the initial sync, the
purge or the steady cycles. For comparing changes to the ingest path when a full run is too
long or the machine too noisy: prints one JSON object (every round, and the median ratio).
`--users N` builds the store of `python -m bench --users N` (the full scenario's shape at N
users, 10 activity rows per user, 50,000 rows ingested per round), to compare store sizes.

As in `python -m bench`, where ingest runs after the initial sync, every record is linked to a
mirrored Entra user holding its upn, email and employee id (`link_to_entra`, SQL standing in
for the sync), so ingest's identifier-reuse lookups read mirror tables of the tenant's size;
`--unlinked` measures the bare store instead.
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

from sqlalchemy import bindparam, create_engine, text

from bench import storegen
from bench.backends import Backend, postgres_backend, sqlite_backend
from bench.ingest import measure_ingest
from bench.machine import describe
from bench.scenario import FULL, QUICK, SCENARIOS, T0, Scenario, sized
from entrasync.config import Config, load_config
from entrasync.sim.generate import generate_tenant
from entrasync.store.db import Store
from entrasync.store.driver import on_postgresql
from entrasync.store.schema import EntraUserRow

PG_ENV = "ENTRASYNC_TEST_DATABASE_URL"


def link_to_entra(url: str) -> None:
    """What an initial sync leaves for ingest to read: each record linked to an Entra user
    (`obj-<record id>`) that holds the record's upn (rank 1), email and employee id (rank 2)
    as keys."""
    updated = bindparam("t", T0, type_=EntraUserRow.__table__.c.updated_at.type)
    engine = create_engine(url)
    empty = "CAST('[]' AS JSON)" if on_postgresql(engine) else "'[]'"
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO entra_users (object_id, upn, mail, employee_id, proxy_addresses,"
                    " previous_upns, account_enabled, updated_at) "
                    f"SELECT 'obj-' || u.user_id, u.value, u.value, e.value, {empty}, {empty}, "
                    "TRUE, :t "
                    "FROM identifiers u JOIN identifiers e ON e.user_id = u.user_id "
                    "AND e.kind = 'employee_id' WHERE u.kind = 'upn'"
                ).bindparams(updated)
            )
            conn.execute(text("UPDATE users SET entra_object_id = 'obj-' || id"))
            conn.execute(
                text(
                    "INSERT INTO entra_keys (kind, value, object_id, rank) "
                    "SELECT kind, value, 'obj-' || user_id, "
                    "CASE WHEN kind = 'upn' THEN 1 ELSE 2 END FROM identifiers "
                    "WHERE kind IN ('upn', 'email', 'employee_id')"
                )
            )
    finally:
        engine.dispose()


def prepare_store(
    backend: Backend, scenario: Scenario, tmp: Path, *, linked: bool = True
) -> tuple[Config, float]:
    """The store of `scenario` (linked to Entra as a first sync leaves it, unless `linked`
    is false), analyzed and copied for the raw side, and a config naming it; with the
    seconds that took."""
    started = time.perf_counter()
    storegen.build_store(backend.url, scenario, T0)
    if linked:
        link_to_entra(backend.url)
    if backend.name == "postgresql":
        storegen.analyze_pg(backend.url)
    backend.make_copy()
    build_s = round(time.perf_counter() - started, 1)
    print(f"[{backend.name}] store built in {build_s} s", file=sys.stderr, flush=True)
    config_path = tmp / f"entrasync-{backend.name}.toml"
    config_path.write_text(
        f'[store]\nurl = "{backend.url}"\n\n[account]\npurchased_licenses = 10000000\n',
        encoding="utf-8",
    )
    return load_config(config_path), build_s


def _backend_rounds(
    backend: Any, scenario: Scenario, gen: Any, rounds: int, tmp: Path, linked: bool
) -> Any:
    try:
        config, build_s = prepare_store(backend, scenario, tmp, linked=linked)
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
        seconds = [r["ingest_s"] for r in results]
        return {
            "rounds": results,
            "median_ratio": round(statistics.median(ratios), 3),
            "median_ingest_s": round(statistics.median(seconds), 3),
            "store_build_s": build_s,
        }
    finally:
        backend.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest_only")
    parser.add_argument("--quick", action="store_true", help="the quick scenario's store")
    parser.add_argument("--scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--users", type=int, metavar="N", help="the store of `bench --users N`")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres", default=os.environ.get(PG_ENV) or None, metavar="URL")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument(
        "--unlinked", action="store_true", help="records not linked to Entra (no mirror rows)"
    )
    args = parser.parse_args(argv)
    if args.users:
        scenario = sized(args.users)
    else:
        scenario = SCENARIOS[args.scenario] if args.scenario else QUICK if args.quick else FULL
    began = time.perf_counter()
    gen = generate_tenant(
        scenario.users, dnt=scenario.dnt, delete=scenario.delete, nested=scenario.nested, seed=8
    )
    linked = not args.unlinked
    result: dict[str, Any] = {"scenario": scenario.name, "users": scenario.users, "linked": linked}
    with tempfile.TemporaryDirectory(prefix="entrasync-bench-ingest-") as tmp:
        if not args.no_sqlite:
            result["sqlite"] = _backend_rounds(
                sqlite_backend(Path(tmp)), scenario, gen, args.rounds, Path(tmp), linked
            )
        if args.postgres:
            result["postgresql"] = _backend_rounds(
                postgres_backend(args.postgres), scenario, gen, args.rounds, Path(tmp), linked
            )
    result["machine"] = describe(args.postgres)
    result["bench_s"] = round(time.perf_counter() - began, 1)
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
