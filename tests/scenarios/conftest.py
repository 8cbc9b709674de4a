"""Admin stories, end to end: the `entrasync` CLI against the Graph emulator, on SQLite and
PostgreSQL. Each story asserts the store, the audit records and the exit code."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "sync"))

from syncworld import SECRET, World, make_world


@pytest.fixture
def world(tmp_path: Path, store_url: str) -> Iterator[World]:
    yield from make_world(tmp_path, store_url)


@pytest.fixture
def es(cli: Any, world: World, monkeypatch: pytest.MonkeyPatch) -> Any:
    """`entrasync --config <the world's config> ARGS…`, with the client secret in the env."""
    monkeypatch.setenv("ENTRASYNC_CLIENT_SECRET", SECRET)
    return lambda *args: cli("--config", str(world.config_path), *args)
