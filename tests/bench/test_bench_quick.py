"""The benchmark's code path on a tiny scenario: every figure is produced, and a cycle with
no changes sends exactly one Graph request per delta stream. (Speed goals live in `bench`.)"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench.__main__ import main, run
from bench.report import render
from bench.scenario import TINY

KEYS = [
    "steady_cycle_graph_requests",
    "steady_cycle_min_requests",
    "steady_cycle_ms",
    "churn_cycle_ms",
    "full_listing_cycle_graph_requests",
    "initial_sync_requests_vs_min_ratio",
    "initial_sync_s",
    "initial_sync_peak_rss_mb",
    "purge_vs_raw_sql_ratio",
    "ingest_rows_per_s",
    "ingest_vs_raw_insert_ratio",
]


def _check(figures: dict[str, object]) -> None:
    for key in KEYS:
        assert key in figures, key
        assert isinstance(figures[key], int | float), (key, figures[key])
    # watched groups share one groups/delta stream, the nested group has its own, + users
    assert figures["steady_cycle_min_requests"] == 3
    assert figures["steady_cycle_graph_requests"] == figures["steady_cycle_min_requests"]
    assert figures["steady_cycle_actions"] == 0
    assert figures["initial_sync_requests_vs_min_ratio"] == 1
    assert figures["purge_users"] == TINY.purge_users
    assert figures["ingest_rows"] == TINY.ingest_rows
    # the churn cycle untracks every user who joined the DNT group, one Graph round
    assert figures["churn_changes"] == TINY.churn
    assert figures["churn_cycle_actions"] == TINY.churn


def test_tiny_bench_sqlite(tmp_path: Path) -> None:
    result = run(TINY, postgres_url=None, workdir=tmp_path, quiet=True)
    _check(result)
    assert "postgresql" not in result
    assert result["machine"]["cores"]
    assert "steady cycle: Graph requests" in render(result)


@pytest.mark.postgres
def test_tiny_bench_postgres(tmp_path: Path) -> None:
    url = os.environ.get("ENTRASYNC_TEST_DATABASE_URL")
    if not url:
        pytest.skip("ENTRASYNC_TEST_DATABASE_URL is not set")
    result = run(TINY, postgres_url=url, workdir=tmp_path, quiet=True)
    _check(result["postgresql"])
    assert result["machine"]["postgresql"]


SIZE_KEYS = [
    "users",
    "initial_sync_s",
    "initial_sync_peak_rss_mb",
    "steady_cycle_ms",
    "churn_cycle_ms",
    "ingest_vs_raw_insert_ratio",
    "purge_vs_raw_sql_ratio",
]


def test_several_sizes_in_one_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--users N,M --backend sqlite --json`: every figure per size, and a growth object
    with each figure's ratio between the largest and the smallest size."""
    argv = ["--users", "240,120", "--backend", "sqlite", "--json", "--quiet"]
    code = main([*argv, "--workdir", str(tmp_path)])
    result = json.loads(capsys.readouterr().out)
    assert [s["users"] for s in result["sizes"]] == [120, 240]
    assert result["backends"] == ["sqlite"]
    for size in result["sizes"]:
        figures = size["sqlite"]
        for key in SIZE_KEYS:
            assert isinstance(figures[key], int | float), (key, figures.get(key))
        assert figures["steady_cycle_graph_requests"] == figures["steady_cycle_min_requests"]
        assert figures["initial_sync_requests_vs_min_ratio"] == 1
        assert figures["churn_changes"] > 0
        assert figures["churn_cycle_actions"] == figures["churn_changes"]
    growth = result["growth"]["sqlite"]
    assert growth["users"] == 2
    assert set(SIZE_KEYS) <= set(growth)
    # below full size only the request and purge targets apply; the growth ones do not
    assert all(not t["applies"] for t in result["targets"] if "grows" in t["target"])
    assert code == (0 if all(t["met"] for t in result["targets"] if t["applies"]) else 1)
    saved = tmp_path / "sizes.json"
    saved.write_text(json.dumps(result), encoding="utf-8")
    assert main(["--from-json", str(saved), "--markdown"]) == code
    table = capsys.readouterr().out
    assert "| churn cycle ms (membership changes) |" in table
    assert "sqlite growth" in table
