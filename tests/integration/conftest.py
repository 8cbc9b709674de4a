"""Integration helpers: the CLI bound to the test store's config, ingesting report lines, and
a full dump of the store for "nothing changed" comparisons."""

from __future__ import annotations

import importlib.util
import itertools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData, create_engine, select, text


def _root_conftest() -> Any:
    # Test modules here do `from conftest import …`, which finds this file; the shared
    # helpers of tests/conftest.py are re-exported from it.
    path = Path(__file__).parents[1] / "conftest.py"
    spec = importlib.util.spec_from_file_location("entrasync_tests_root_helpers", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


_root = _root_conftest()
report = _root.report
write_config = _root.write_config
BACKENDS = _root.BACKENDS

Run = Callable[..., Any]
_files = itertools.count(1)


@pytest.fixture
def es(cli: Any, config_path: Path) -> Run:
    """`entrasync --config <test config> ARGS…`."""

    def run(*args: str) -> Any:
        return cli("--config", str(config_path), *args)

    return run


@pytest.fixture
def ingest(es: Run, tmp_path: Path) -> Callable[..., Any]:
    """Write report lines to a file and `entrasync ingest` it; returns the CLI result."""

    def run(*lines: str, expect: int = 0) -> Any:
        path = tmp_path / f"reports-{next(_files)}.jsonl"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        result = es("ingest", str(path), "--json")
        assert result.code == expect, result.err
        return result

    return run


def dump_store(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in primary-key order (rows as tuples of column values)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            out: dict[str, list[tuple[Any, ...]]] = {}
            metadata = MetaData()
            metadata.reflect(conn)  # the tables the store has, not the ones the code knows
            for table in metadata.sorted_tables:
                order = list(table.primary_key.columns) or list(table.columns)
                out[table.name] = [tuple(r) for r in conn.execute(select(table).order_by(*order))]
            return out
    finally:
        engine.dispose()


@pytest.fixture
def dump(store_url: str) -> Callable[[], dict[str, list[tuple[Any, ...]]]]:
    return lambda: dump_store(store_url)


def sql(url: str, statement: str, **params: Any) -> None:
    """Run one statement by hand, outside entrasync (as a tampering admin would)."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(statement), params)
    finally:
        engine.dispose()


__all__ = ["BACKENDS", "dump_store", "report", "sql", "write_config"]
