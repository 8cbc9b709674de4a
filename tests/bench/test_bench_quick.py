"""The benchmark's code path on a tiny scenario: every figure is produced, and a cycle with
no changes sends exactly one Graph request per delta stream. (Speed goals live in `bench`.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.__main__ import run
from bench.report import render
from bench.scenario import TINY

KEYS = [
    "steady_cycle_graph_requests",
    "steady_cycle_min_requests",
    "steady_cycle_ms",
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
