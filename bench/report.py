"""Targets, and the figures as a table."""

from __future__ import annotations

from typing import Any

# (key, label, unit) in table order
ROWS: list[tuple[str, str]] = [
    ("steady_cycle_graph_requests", "steady cycle: Graph requests"),
    ("steady_cycle_min_requests", "steady cycle: minimum (one per delta stream)"),
    ("steady_cycle_login_requests", "steady cycle: sign-in requests (all rounds)"),
    ("full_listing_cycle_graph_requests", "full-listing cycle: Graph requests ($top=999)"),
    ("steady_cycle_ms", "steady cycle: ms (median)"),
    ("steady_cycle_ms_max", "steady cycle: ms (max)"),
    ("churn_changes", "churn cycle: membership changes"),
    ("churn_cycle_ms", "churn cycle: ms"),
    ("churn_cycle_graph_requests", "churn cycle: Graph requests"),
    ("initial_sync_graph_requests", "initial sync: Graph requests"),
    ("initial_sync_min_requests", "initial sync: page minimum"),
    ("initial_sync_requests_vs_min_ratio", "initial sync: requests / minimum"),
    ("initial_sync_s", "initial sync: s"),
    ("initial_sync_peak_rss_mb", "initial sync: peak RSS MB (process)"),
    ("initial_sync_rss_before_cycle_mb", "initial sync: RSS before the cycle MB"),
    ("purge_users", "purge: users"),
    ("purge_rows", "purge: activity rows"),
    ("purge_batch_users", "purge: users per transaction"),
    ("purge_entrasync_s", "purge: entrasync s (audited, on copies)"),
    ("purge_raw_sql_s", "purge: raw SQL s (same transactions, on copies)"),
    ("purge_vs_raw_sql_ratio", "purge: entrasync / raw SQL"),
    ("purge_entrasync_ms_per_user", "purge: entrasync ms per user"),
    ("purge_on_store_s", "purge: entrasync s on the store the first sync left"),
    ("ingest_rows", "ingest: rows"),
    ("ingest_s", "ingest: ingest_reports s"),
    ("ingest_parse_s", "ingest: parse_reports s (before it)"),
    ("ingest_rows_per_s", "ingest: rows/s"),
    ("ingest_with_parse_rows_per_s", "ingest: rows/s with parsing"),
    ("ingest_raw_insert_rows_per_s", "ingest: raw INSERT rows/s"),
    ("ingest_vs_raw_insert_ratio", "ingest: entrasync / raw INSERT"),
    ("store_build_s", "store generation s (bulk)"),
]


def _targets_of(figures: dict[str, Any], full_size: bool, backend: str) -> list[dict[str, Any]]:
    def target(
        name: str, value: Any, limit: str, met: bool, applies: bool = True
    ) -> dict[str, Any]:
        return {
            "backend": backend,
            "target": name,
            "value": value,
            "limit": limit,
            "met": met,
            "applies": applies,
        }

    return [
        target(
            "steady cycle requests == minimum",
            figures["steady_cycle_graph_requests"],
            f"== {figures['steady_cycle_min_requests']}",
            figures["steady_cycle_graph_requests"] == figures["steady_cycle_min_requests"],
        ),
        target(
            "steady cycle < 1 s (full size)",
            figures["steady_cycle_ms"],
            "< 1000 ms",
            figures["steady_cycle_ms"] < 1000,
            full_size,
        ),
        target(
            "initial sync requests <= 1.1x minimum",
            figures["initial_sync_requests_vs_min_ratio"],
            "<= 1.1",
            figures["initial_sync_requests_vs_min_ratio"] <= 1.1,
        ),
        target(
            "purge <= 1.5x raw SQL",
            figures["purge_vs_raw_sql_ratio"],
            "<= 1.5",
            figures["purge_vs_raw_sql_ratio"] <= 1.5,
        ),
        target(
            "ingest <= 2x raw bulk insert",
            figures["ingest_vs_raw_insert_ratio"],
            "<= 2",
            figures["ingest_vs_raw_insert_ratio"] <= 2,
        ),
        target(
            "initial sync peak RSS < 400 MB (full size)",
            figures["initial_sync_peak_rss_mb"],
            "< 400 MB",
            figures["initial_sync_peak_rss_mb"] < 400,
            full_size,
        ),
    ]


def evaluate(result: dict[str, Any], *, full_size: bool) -> list[dict[str, Any]]:
    targets = _targets_of(result, full_size, "sqlite")
    if "postgresql" in result:
        targets += _targets_of(result["postgresql"], full_size, "postgresql")
    return targets


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".") if value < 100 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def render(result: dict[str, Any], *, markdown: bool = False) -> str:
    columns = ["sqlite"] + (["postgresql"] if "postgresql" in result else [])
    backends = [result] + ([result["postgresql"]] if "postgresql" in result else [])
    header = ["figure", *columns]
    body = [[label, *(_fmt(b.get(key)) for b in backends)] for key, label in ROWS]
    lines: list[str] = []
    if markdown:
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join(["---", *("---:" for _ in columns)]) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in body]
    else:
        widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
        for row in [header, *body]:
            lines.append(
                "  ".join(
                    cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
                    for i, cell in enumerate(row)
                )
            )
    lines.append("")
    scenario = result["scenario"]
    lines.append(
        f"scenario {scenario['name']}: {scenario['users']:,} users, "
        f"{scenario['dnt'] + scenario['nested']:,} DNT ({scenario['nested']:,} via a nested "
        f"group), {scenario['delete']:,} Delete, {scenario['agents']:,} agents, "
        f"{scenario['activity_rows']:,} activity rows; Graph delta page size "
        f"{result['graph_page_size']}"
    )
    lines.append("")
    for t in result["targets"]:
        mark = "n/a " if not t["applies"] else ("ok  " if t["met"] else "MISS")
        lines.append(
            f"{'- ' if markdown else ''}{mark} [{t['backend']}] {t['target']}: "
            f"{_fmt(t['value'])} ({t['limit']})"
        )
    return "\n".join(lines)
