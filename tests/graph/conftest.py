"""Fixtures for the Graph adapter tests: an emulator over real HTTPS serving a small tenant,
and clients with short retry bounds."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from graph_helpers import CLIENT_ID, SECRET, SmallTenant, build_small_tenant, make_settings

from entrasync.graph import GraphClient
from entrasync.sim import EntraEmulator


@pytest.fixture
def small() -> SmallTenant:
    return build_small_tenant()


@pytest.fixture
def emulator(small: SmallTenant) -> Iterator[EntraEmulator]:
    with EntraEmulator(small.tenant) as emu:
        emu.register_app(CLIENT_ID, secret=SECRET)
        yield emu


@pytest.fixture
def client_for(emulator: EntraEmulator) -> Iterator[Callable[..., GraphClient]]:
    clients: list[GraphClient] = []

    def make(**overrides: Any) -> GraphClient:
        client = GraphClient(make_settings(emulator, **overrides))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(client_for: Callable[..., GraphClient]) -> GraphClient:
    return client_for()
