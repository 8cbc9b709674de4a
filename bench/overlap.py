"""`python -m bench.overlap [--users N] [--latency 0.1] [--read-ahead on|off|both]`: does
fetching the next Graph page overlap storing the current one? (issue 16, point 4)

A tenant of the full scenario's shape at `--users` users (bench/scenario.py `sized`) behind
an emulator that holds every Graph request back `--latency` seconds (a datacentre's round
trip to Graph), the emulator's default page size, a fresh SQLite store per run. Figures:

* `pure_fetch_s`: every page of the users round and of the groups round (nested groups
  included), read to the end with no store involved;
* `initial_sync_s`: the first cycle (read, plan, apply) into an empty store; `read_s`: the
  part of it up to the mirror read's end (both rounds stored, links saved; the rest is
  linking, planning and applying, which never wait for Graph);
* `initial_sync_vs_fetch_ratio` and `read_vs_fetch_ratio` (the target: 1.25);
* `store_pages_s`: the time the cycle's thread spent storing pages (`mirror.apply_*_page`
  inside their units of work), and per page against `fetch_ms_per_page`: when storing a
  page costs more than fetching one, the store bounds the read, not Graph;
* `initial_sync_no_latency_s` / `read_no_latency_s` (`--bound`): the same cycle with no
  latency, i.e. what the cycle costs when Graph is free.

`--read-ahead off` measures the cycle as it was before read-ahead (pages fetched and stored
in turn); `both` measures both. Fetch and sync run in processes of their own (the emulator's
threads stay in this one). `--profile DIR` writes a cProfile of each cycle's thread there.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.machine import describe
from bench.measure import run_json
from bench.scenario import sized
from bench.world import CLIENT_ID, GRAPH_PATH, SECRET, load, write_config
from entrasync.bootstrap import graph_factory, open_store
from entrasync.graph import GraphClient, settings_from_config
from entrasync.sim import EntraEmulator
from entrasync.sim.generate import GeneratedTenant, generate_tenant
from entrasync.store.db import Store
from entrasync.sync import mirror, prefetch
from entrasync.sync import read as read_module
from entrasync.sync.cycle import run_cycle
from entrasync.sync.groups import configured_groups

REPO = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


# -- the children: one fetch or one cycle, in a process of its own ---------------------------


def _fetch_child(config_path: Path) -> dict[str, Any]:
    config = load(config_path)
    settings = settings_from_config(config.entra, {"ENTRASYNC_CLIENT_SECRET": SECRET})
    watched = sorted({g for gs in configured_groups(config).values() for g in gs})
    pages = {"users": 0, "groups": 0}
    with GraphClient(settings) as graph:
        started = time.perf_counter()
        for _ in graph.read_users({}):
            pages["users"] += 1
        for _ in graph.read_groups(watched, {}, nested=config.groups.nested, children=[]):
            pages["groups"] += 1
        elapsed = time.perf_counter() - started
    return {"seconds": elapsed, "pages": pages}


def _sync_child(config_path: Path, read_ahead: bool, profile: Path | None) -> dict[str, Any]:
    if not read_ahead:
        prefetch.DEFAULT_DEPTH = 0  # the cycle as it was: fetch a page, store it, fetch...
    marks: dict[str, float] = {}
    store_s = [0.0]

    def timed_store(apply: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kw: Any) -> Any:
            began = time.perf_counter()
            try:
                return apply(*args, **kw)
            finally:
                store_s[0] += time.perf_counter() - began

        return wrapper

    apply_read = read_module._apply_read

    def reading(*args: Any, **kw: Any) -> Any:
        try:
            return apply_read(*args, **kw)
        finally:
            marks.setdefault("read", time.perf_counter())  # the mirror read has ended

    mirror.apply_user_page = timed_store(mirror.apply_user_page)
    mirror.apply_group_page = timed_store(mirror.apply_group_page)
    read_module._apply_read = reading

    config = load(config_path)
    store = open_store(config)
    factory = graph_factory(config, {"ENTRASYNC_CLIENT_SECRET": SECRET})
    profiler = cProfile.Profile() if profile else None
    started = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    result = run_cycle(store, config, factory, T0)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(str(profile))
    elapsed = time.perf_counter() - started
    store.engine.dispose()
    return {
        "seconds": elapsed,
        "read_s": marks.get("read", started) - started,
        "store_pages_s": store_s[0],
        "status": str(result.status),
    }


def _child(args: list[str]) -> dict[str, Any]:
    return run_json("bench.overlap", "--child", *args)


# -- the parent --------------------------------------------------------------------------------


def _store(workdir: Path, name: str) -> str:
    url = f"sqlite:///{workdir / f'{name}.db'}"
    store = Store(url, check_schema=False)
    store.upgrade()
    store.engine.dispose()
    return url


def _cycle(
    emu: EntraEmulator,
    gen: GeneratedTenant,
    workdir: Path,
    ahead: bool,
    latency: float,
    fetch_s: float | None,
    pages: int,
    profile: Path | None,
) -> dict[str, Any]:
    """One initial sync into a fresh store, with the emulator's latency set to `latency`."""
    emu.latency = latency
    name = f"sync-{'ahead' if ahead else 'in-turn'}-{latency:g}"
    config = write_config(workdir / f"{name}.toml", emu, gen, _store(workdir, name))
    args = ["sync", str(config), "on" if ahead else "off"]
    if profile is not None:
        args.append(str(profile / f"{name}-{len(gen.user_ids)}.pstats"))
    cycle = _child(args)
    figures: dict[str, Any] = {
        "initial_sync_s": round(cycle["seconds"], 2),
        "read_s": round(cycle["read_s"], 2),
        "store_pages_s": round(cycle["store_pages_s"], 2),
        "store_ms_per_page": round(cycle["store_pages_s"] / pages * 1000, 1),
        "status": cycle["status"],
    }
    if fetch_s:
        figures["initial_sync_vs_fetch_ratio"] = round(cycle["seconds"] / fetch_s, 3)
        figures["read_vs_fetch_ratio"] = round(cycle["read_s"] / fetch_s, 3)
    return figures


def measure(
    users: int,
    latency: float,
    modes: list[bool],
    *,
    bound: bool,
    profile: Path | None,
    log: Callable[[str], None],
) -> dict[str, Any]:
    scenario = sized(users)
    log(f"generating a tenant of {users:,} users")
    gen = generate_tenant(
        users, dnt=scenario.dnt, delete=scenario.delete, nested=scenario.nested, seed=8
    )
    result: dict[str, Any] = {"users": users, "latency_s": latency}
    with (
        tempfile.TemporaryDirectory(prefix="entrasync-overlap-") as tmp,
        EntraEmulator(gen.tenant, workdir=Path(tmp) / "emu", latency=latency) as emu,
    ):
        workdir = Path(tmp)
        emu.register_app(CLIENT_ID, secret=SECRET)
        result["graph_page_size"] = emu.page_size
        fetch_config = write_config(workdir / "fetch.toml", emu, gen, _store(workdir, "fetch"))
        log("pure fetch")
        emu.log.clear()
        fetched = _child(["fetch", str(fetch_config)])
        requests = emu.log.count(GRAPH_PATH)
        pages = fetched["pages"]["users"] + fetched["pages"]["groups"]
        result.update(
            pure_fetch_s=round(fetched["seconds"], 2),
            pages=fetched["pages"],
            graph_requests=requests,
            fetch_ms_per_page=round(fetched["seconds"] / pages * 1000, 1),
        )
        for ahead in modes:  # the last mode's figures are the top-level ones
            figures = _cycle(emu, gen, workdir, ahead, latency, fetched["seconds"], pages, profile)
            log(f"initial sync, read-ahead {'on' if ahead else 'off'}: {figures}")
            if ahead == modes[-1]:
                result.update(read_ahead=ahead, **figures)
            else:
                result["without_read_ahead"] = figures
        if bound:
            figures = _cycle(emu, gen, workdir, modes[-1], 0.0, None, pages, profile)
            log(f"initial sync, no latency: {figures}")
            result["no_latency"] = figures
    result["machine"] = describe(None)
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.overlap", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--latency", type=float, default=0.1, help="seconds per Graph request")
    parser.add_argument("--read-ahead", choices=["on", "off", "both"], default="on")
    parser.add_argument("--bound", action="store_true", help="also sync with no latency")
    parser.add_argument("--profile", type=Path, help="write cProfile stats of each cycle here")
    parser.add_argument("--quiet", action="store_true")
    return parser


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        kind, config = argv[1], Path(argv[2])
        if kind == "fetch":
            out = _fetch_child(config)
        else:
            out = _sync_child(config, argv[3] == "on", Path(argv[4]) if len(argv) > 4 else None)
        json.dump(out, sys.stdout)
        return 0
    args = _parser().parse_args(argv)
    began = time.perf_counter()

    def log(message: str) -> None:
        if not args.quiet:
            print(f"{time.perf_counter() - began:7.1f}s  {message}", file=sys.stderr, flush=True)

    modes = {"on": [True], "off": [False], "both": [False, True]}[args.read_ahead]
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    result = measure(
        args.users, args.latency, modes, bound=args.bound, profile=args.profile, log=log
    )
    result["bench_s"] = round(time.perf_counter() - began, 1)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
