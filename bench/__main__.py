"""`python -m bench [--quick] [--json] [--postgres] [--users N,M] [--backend B]`: what a cycle
costs, side by side.

Full size by default (100k Entra users, 5M activity rows; about eight minutes on two cores
with PostgreSQL), `--quick` for a 20k-user run in about a minute, `--scenario dense` for the
quick tenant with ten times the history. PostgreSQL is measured too with `--postgres` or when
`ENTRASYNC_TEST_DATABASE_URL` is set (its `test` database; the bench uses schemas of its own
and drops them afterwards).

`--users 100000,1000000` measures several tenant sizes in one run (the full scenario's shape
at each size, `--rows-per-user` activity rows per user) and adds a `growth` object: each
figure's ratio between the largest and the smallest size. `--backend sqlite|postgresql|both`
chooses the stores. Results of a full run: bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.backends import postgres_backend, sqlite_backend
from bench.machine import describe
from bench.measure import Log, run_backend
from bench.report import evaluate, render
from bench.scenario import FULL, QUICK, SCENARIOS, Scenario, sized
from bench.sizes import render_sizes, run_sizes
from bench.world import CLIENT_ID, SECRET, request_model
from entrasync.sim import EntraEmulator
from entrasync.sim.generate import generate_tenant

PG_ENV = "ENTRASYNC_TEST_DATABASE_URL"
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def progress(quiet: bool) -> Log:
    began = time.perf_counter()

    def log(message: str) -> None:
        if not quiet:
            print(f"{time.perf_counter() - began:7.1f}s  {message}", file=sys.stderr, flush=True)

    return log


def measure_scenario(
    scenario: Scenario,
    *,
    sqlite: bool,
    postgres_url: str | None,
    workdir: Path | None,
    log: Log,
) -> dict[str, Any]:
    """{"scenario", "graph_page_size", "sqlite"?: figures, "postgresql"?: figures}."""
    log(f"scenario {scenario.name}: generating a tenant of {scenario.users:,} users")
    gen = generate_tenant(
        scenario.users,
        dnt=scenario.dnt,
        delete=scenario.delete,
        nested=scenario.nested,
        seed=8,
    )
    with (
        tempfile.TemporaryDirectory(prefix="entrasync-bench-", dir=workdir) as tmp,
        EntraEmulator(gen.tenant, workdir=Path(tmp) / "emu") as emu,
    ):
        emu.register_app(CLIENT_ID, secret=SECRET)
        model = request_model(gen, emu.page_size)
        result: dict[str, Any] = {"scenario": scenario.as_dict(), "graph_page_size": emu.page_size}
        if sqlite:
            backend = sqlite_backend(Path(tmp))
            result["sqlite"] = run_backend(backend, scenario, gen, emu, model, Path(tmp), log)
        if postgres_url:
            backend = postgres_backend(postgres_url)
            result["postgresql"] = run_backend(backend, scenario, gen, emu, model, Path(tmp), log)
    return result


def run(
    scenario: Scenario,
    *,
    postgres_url: str | None,
    workdir: Path | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Every figure for `scenario`: SQLite at the top level, PostgreSQL under `postgresql`."""
    began = time.perf_counter()
    measured = measure_scenario(
        scenario, sqlite=True, postgres_url=postgres_url, workdir=workdir, log=progress(quiet)
    )
    result: dict[str, Any] = {
        "scenario": measured["scenario"],
        "graph_page_size": measured["graph_page_size"],
        **measured["sqlite"],
    }
    if "postgresql" in measured:
        result["postgresql"] = measured["postgresql"]
    result["machine"] = describe(postgres_url)
    result["targets"] = evaluate(result, full_size=scenario.name == FULL.name)
    result["bench_s"] = round(time.perf_counter() - began, 1)
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="20k users, 500k rows (~1 minute)")
    size.add_argument(
        "--scenario", choices=sorted(SCENARIOS), help="a named size (dense: quick with 10x history)"
    )
    size.add_argument(
        "--users", metavar="N,M,…", help="tenant sizes to measure in one run (adds `growth`)"
    )
    parser.add_argument(
        "--rows-per-user", type=int, default=10, help="activity rows per user with --users"
    )
    parser.add_argument(
        "--backend",
        choices=("sqlite", "postgresql", "both"),
        help="stores to measure (default: SQLite, and PostgreSQL with --postgres)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--postgres",
        nargs="?",
        const=os.environ.get(PG_ENV) or DEFAULT_PG,
        default=os.environ.get(PG_ENV) or None,
        metavar="URL",
        help=f"measure PostgreSQL too (default: ${PG_ENV} when set)",
    )
    parser.add_argument("--markdown", action="store_true", help="the table as Markdown")
    parser.add_argument(
        "--from-json", type=Path, metavar="FILE", help="render a saved --json result, no run"
    )
    parser.add_argument("--workdir", type=Path, help="where the SQLite files go (default: /tmp)")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return parser


def _measure(args: argparse.Namespace) -> dict[str, Any]:
    scenario = SCENARIOS[args.scenario] if args.scenario else QUICK if args.quick else FULL
    if not args.users and not args.backend:
        return run(scenario, postgres_url=args.postgres, workdir=args.workdir, quiet=args.quiet)
    backend = args.backend or "sqlite"
    postgres = args.postgres or DEFAULT_PG if backend in ("postgresql", "both") else None
    if backend == "sqlite" and not args.backend:
        postgres = args.postgres
    scenarios = [scenario]
    if args.users:
        counts = sorted({int(n.replace("_", "")) for n in args.users.split(",") if n.strip()})
        scenarios = [sized(n, rows_per_user=args.rows_per_user) for n in counts]
    return run_sizes(
        scenarios,
        sqlite=backend in ("sqlite", "both"),
        postgres_url=postgres,
        measure=lambda s, log: measure_scenario(
            s,
            sqlite=backend in ("sqlite", "both"),
            postgres_url=postgres,
            workdir=args.workdir,
            log=log,
        ),
        log=progress(args.quiet),
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.from_json:
        result = json.loads(args.from_json.read_text(encoding="utf-8"))
    else:
        result = _measure(args)
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
    elif "sizes" in result:
        print(render_sizes(result, markdown=args.markdown))
    else:
        print(render(result, markdown=args.markdown))
    return 0 if all(t["met"] for t in result["targets"] if t["applies"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
