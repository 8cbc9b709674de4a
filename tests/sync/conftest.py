from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from syncworld import World, make_world


@pytest.fixture
def world(tmp_path: Path, store_url: str) -> Iterator[World]:
    yield from make_world(tmp_path, store_url)
