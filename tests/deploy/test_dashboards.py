"""deploy/grafana/entrasync.json and deploy/prometheus/alerts.yaml name only metrics that
`/metrics` exports: the names come from the daemon's own registry, rendered as `/metrics`
renders it, not from a hand-kept list. With promtool on PATH, the alerts' unit tests
(deploy/prometheus/alerts_test.yaml) run too."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from entrasync.daemon.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "entrasync.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"
ALERT_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yaml"

# PromQL words that are not metric names: aggregations, set operators, modifiers, literals.
PROMQL_WORDS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio",
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "atan2", "inf", "nan", "start", "end",
}  # fmt: skip
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")


def exported_names() -> set[str]:
    """Every series name `/metrics` can carry, from the text the daemon serves: each TYPE
    line (a labelled metric with no child yet has no sample) and each sample."""
    names: set[str] = set()
    for line in Metrics().render().decode().splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            if kind == "histogram":
                names.update(name + suffix for suffix in HISTOGRAM_SERIES)
            else:
                names.add(name)
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (Grafana's $variables allowed)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges and subqueries
    expr = re.sub(r"\$\w+", "", expr)  # Grafana variables outside braces
    names = set()
    for match in re.finditer(r"(?<![\w.$])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?", expr):
        word, is_call = match.groups()
        if not is_call and word.lower() not in PROMQL_WORDS:
            names.add(word)
    return names


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in _panels(dashboard["panels"]) for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else ""
        found = re.fullmatch(r"label_values\((.+),\s*\w+\)", text)
        if found:
            exprs.append(found.group(1))
    return exprs


def alert_rules() -> list[dict[str, Any]]:
    rule = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def test_the_extraction_finds_names_and_skips_promql_words() -> None:
    expr = (
        'histogram_quantile(0.9, sum by (le) (rate(a_bucket{job=~"$job", x="y z"}[5m])))'
        " / on (job) group_left max without (i) (b offset 5m) and bool c_total > 1e3"
    )
    assert metric_names(expr) == {"a_bucket", "b", "c_total"}
    assert metric_names('time() - max(entrasync_typo{namespace=~"$namespace"})') == {
        "entrasync_typo"
    }


def test_the_registry_names_include_every_kind_of_series() -> None:
    names = exported_names()
    assert {
        "entrasync_cycles_total",  # a counter with children
        "entrasync_actions_total",  # a labelled counter with none yet
        "entrasync_watched_group_suspect",  # a labelled gauge with none yet
        "entrasync_cycle_duration_seconds_bucket",  # a histogram's series
        "entrasync_leader",
    } <= names
    assert "entrasync_cycles" not in names and "entrasync_cycle_duration_seconds" not in names


def test_the_dashboard_names_only_exported_metrics() -> None:
    exprs = dashboard_expressions()
    used = set().union(*(metric_names(e) for e in exprs))
    assert len(exprs) >= 20 and len(used) >= 15
    unknown = used - exported_names()
    assert not unknown, f"deploy/grafana/entrasync.json names metrics /metrics lacks: {unknown}"


def test_the_dashboard_shows_what_operators_ask_for() -> None:
    used = set().union(*(metric_names(e) for e in dashboard_expressions()))
    assert {
        "entrasync_licenses_used",
        "entrasync_licenses_purchased",
        "entrasync_licenses_pending",
        "entrasync_actions_total",
        "entrasync_held_actions_total",
        "entrasync_watched_group_suspect",
        "entrasync_graph_requests_total",
        "entrasync_cycle_duration_seconds_bucket",
        "entrasync_leader",
        "entrasync_audit_forward_backlog",
    } <= used


def test_the_alerts_name_only_exported_metrics() -> None:
    rules = alert_rules()
    used = set().union(*(metric_names(r["expr"]) for r in rules))
    unknown = used - exported_names()
    assert not unknown, f"deploy/prometheus/alerts.yaml names metrics /metrics lacks: {unknown}"
    assert {
        "entrasync_consecutive_failures",
        "entrasync_last_success_timestamp_seconds",
        "entrasync_watched_group_suspect",
        "entrasync_cycles_total",
        "entrasync_licenses_used",
        "entrasync_audit_forward_backlog",
    } <= used
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names))


def test_the_label_values_the_alerts_match_exist() -> None:
    """`outcome="held"` must be an outcome the daemon counts."""
    text = Metrics().render().decode()
    for rule in alert_rules():
        for outcome in re.findall(r'outcome="([^"]+)"', rule["expr"]):
            assert f'entrasync_cycles_total{{outcome="{outcome}"}}' in text


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not on PATH")
def test_the_alerts_fire_when_their_unit_tests_say(tmp_path: Path) -> None:
    spec = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["spec"]
    for group in spec["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)  # the tests pin when alerts fire, not their text
    tests = yaml.safe_load(ALERT_TESTS.read_text(encoding="utf-8"))
    (tmp_path / tests["rule_files"][0]).write_text(yaml.safe_dump(spec), encoding="utf-8")
    (tmp_path / "alerts_test.yaml").write_text(yaml.safe_dump(tests), encoding="utf-8")
    done = subprocess.run(
        ["promtool", "test", "rules", "alerts_test.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
