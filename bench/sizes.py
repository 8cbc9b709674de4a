"""Several tenant sizes in one run (`python -m bench --users 100000,1000000`): the figures
per size and store, and how each grows between the smallest and the largest size."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from bench.machine import describe
from bench.report import _fmt, _targets_of
from bench.scenario import Scenario

Log = Callable[[str], None]
Measure = Callable[[Scenario, Log], dict[str, Any]]
BACKENDS = ("sqlite", "postgresql")
FULL_SIZE_USERS = 100_000  # where the full-size targets (and the growth targets) apply

# The figures each size reports, in table order (with `users`), and whose growth is shown.
FIGURES: list[tuple[str, str]] = [
    ("users", "users"),
    ("initial_sync_s", "initial sync s"),
    ("initial_sync_peak_rss_mb", "initial sync peak RSS MB"),
    ("steady_cycle_ms", "steady cycle ms (no changes)"),
    ("churn_cycle_ms", "churn cycle ms (membership changes)"),
    ("ingest_vs_raw_insert_ratio", "ingest / raw INSERT"),
    ("purge_vs_raw_sql_ratio", "purge / raw SQL"),
]
# (figure, the most it may grow from the smallest to the largest size): issue 16's goals.
GROWTH_LIMITS = {
    "steady_cycle_ms": 1.25,
    "churn_cycle_ms": 1.25,
    "ingest_s": 1.25,
}
EXTRA = [
    ("steady_cycle_graph_requests", "steady cycle Graph requests"),
    ("steady_cycle_min_requests", "one per delta stream"),
    ("initial_sync_requests_vs_min_ratio", "initial sync requests / minimum"),
    ("churn_changes", "churn: membership changes"),
    ("churn_cycle_graph_requests", "churn cycle Graph requests"),
    ("ingest_rows", "ingest rows"),
    ("ingest_s", "ingest s"),
    ("purge_users", "purge users"),
    ("purge_on_store_s", "purge s on the store itself"),
    ("store_build_s", "store generation s"),
]


def run_sizes(
    scenarios: list[Scenario],
    *,
    sqlite: bool,
    postgres_url: str | None,
    measure: Measure,
    log: Log,
) -> dict[str, Any]:
    """Each scenario measured in turn (one at a time: the sizes share the machine)."""
    began = time.perf_counter()
    sizes = []
    for scenario in sorted(scenarios, key=lambda s: s.users):
        measured = measure(scenario, log)
        for name in BACKENDS:
            if name in measured:
                measured[name] = {"users": scenario.users, **measured[name]}
        sizes.append({"users": scenario.users, **measured})
        # Each size on the log as it ends: a run stopped at the largest keeps the others.
        log(f"{scenario.name} measured: {json.dumps(sizes[-1], separators=(',', ':'))}")
    backends = [
        b for b in BACKENDS if (b == "sqlite" and sqlite) or (b != "sqlite" and postgres_url)
    ]
    result: dict[str, Any] = {
        "backends": backends,
        "sizes": sizes,
        "growth": {b: growth([s[b] for s in sizes]) for b in backends},
    }
    result["machine"] = describe(postgres_url)
    result["targets"] = evaluate_sizes(result)
    result["bench_s"] = round(time.perf_counter() - began, 1)
    return result


def growth(per_size: list[dict[str, Any]]) -> dict[str, float | None]:
    """Each figure's ratio largest size / smallest size (None where the smallest is 0)."""
    small = min(per_size, key=lambda f: f["users"])
    large = max(per_size, key=lambda f: f["users"])
    keys = [k for k, _ in FIGURES] + [k for k in GROWTH_LIMITS if k not in dict(FIGURES)]
    return {
        key: round(large[key] / small[key], 3) if small.get(key) else None
        for key in keys
        if key in small and key in large
    }


def evaluate_sizes(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The single-size targets at every size (the full-size ones from 100k users), and the
    growth targets when the smallest size is full size and the sizes differ."""
    targets: list[dict[str, Any]] = []
    for size in result["sizes"]:
        for backend in result["backends"]:
            full = size["users"] >= FULL_SIZE_USERS
            for target in _targets_of(size[backend], full, backend):
                target["target"] = f"{size['users']:,} users: {target['target']}"
                targets.append(target)
    users = [s["users"] for s in result["sizes"]]
    applies = len(users) > 1 and min(users) >= FULL_SIZE_USERS
    for backend in result["backends"]:
        grown = result["growth"][backend]
        for key, limit in GROWTH_LIMITS.items():
            value = grown.get(key)
            targets.append(
                {
                    "backend": backend,
                    "target": f"{key} grows <= {limit}x from {min(users):,} to {max(users):,}",
                    "value": value,
                    "limit": f"<= {limit}",
                    "met": value is not None and value <= limit,
                    "applies": applies,
                }
            )
    return targets


def render_sizes(result: dict[str, Any], *, markdown: bool = False) -> str:
    header = ["figure"]
    columns: list[dict[str, Any]] = []
    for size in result["sizes"]:
        for backend in result["backends"]:
            header.append(f"{backend} {size['users']:,}")
            columns.append(size[backend])
    for backend in result["backends"]:
        header.append(f"{backend} growth")
    body = []
    for key, label in FIGURES + EXTRA:
        row = [label, *(_fmt(c.get(key)) for c in columns)]
        row += [_fmt(result["growth"][b].get(key)) for b in result["backends"]]
        body.append(row)
    lines = _table(header, body, markdown)
    lines.append("")
    for t in result["targets"]:
        mark = "n/a " if not t["applies"] else ("ok  " if t["met"] else "MISS")
        lines.append(
            f"{'- ' if markdown else ''}{mark} [{t['backend']}] {t['target']}: "
            f"{_fmt(t['value'])} ({t['limit']})"
        )
    return "\n".join(lines)


def _table(header: list[str], body: list[list[str]], markdown: bool) -> list[str]:
    if markdown:
        return [
            "| " + " | ".join(header) + " |",
            "|" + "|".join(["---", *("---:" for _ in header[1:])]) + "|",
            *("| " + " | ".join(row) + " |" for row in body),
        ]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    return [
        "  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(row))
        for row in [header, *body]
    ]
