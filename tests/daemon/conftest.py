from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemonworld import DaemonWorld, make_daemon_world
from testkit import BACKENDS


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture
def dworld(tmp_path: Path, make_store_url: Any, backend: str) -> Iterator[DaemonWorld]:
    yield from make_daemon_world(tmp_path, make_store_url(backend))


@pytest.fixture
def sqlite_world(tmp_path: Path, make_store_url: Any) -> Iterator[DaemonWorld]:
    yield from make_daemon_world(tmp_path, make_store_url("sqlite"))


@pytest.fixture
def pg_world(tmp_path: Path, make_store_url: Any) -> Iterator[DaemonWorld]:
    yield from make_daemon_world(tmp_path, make_store_url("postgresql"))
