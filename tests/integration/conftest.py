"""Integration helpers: the CLI bound to the test store's config, ingesting report lines, and
a full dump of the store for "nothing changed" comparisons."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from testkit import dump_store

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


@pytest.fixture
def dump(store_url: str) -> Callable[[], dict[str, list[tuple[Any, ...]]]]:
    return lambda: dump_store(store_url)
