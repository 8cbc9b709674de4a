"""Fixtures for the Graph adapter tests: an emulator over real HTTPS, a small tenant, and
GraphSettings with short retry bounds so that failure paths take fractions of a second."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest

from entrasync.graph import ClientSecret, GraphClient, GraphSettings, RetryPolicy
from entrasync.sim import EntraEmulator, Tenant

CLIENT_ID = "6f1c2a9e-0000-4000-8000-00000000c11e"
SECRET = "Xy7~s3cr3t.Value-Never-Printed_42"
FAST_RETRY = RetryPolicy(
    max_attempts=5, max_total=5.0, backoff_base=0.02, backoff_max=0.1, max_retry_after=5.0
)


@dataclass
class SmallTenant:
    tenant: Tenant
    alice: str
    bob: str
    carol: str
    dave: str
    dnt: str
    delete: str


def build_small_tenant() -> SmallTenant:
    tenant = Tenant()
    alice = tenant.add_user("alice@contoso.com", employee_id="E1",
                            on_premises_sam_account_name="alice", on_premises_domain_name="CONTOSO")
    bob = tenant.add_user("bob@contoso.com")
    carol = tenant.add_user("carol@contoso.com")
    dave = tenant.add_user("dave@contoso.com")
    dnt = tenant.add_group("Do Not Track")
    delete = tenant.add_group("Delete")
    tenant.add_members(dnt, [alice, bob])
    tenant.add_member(delete, carol)
    return SmallTenant(tenant, alice, bob, carol, dave, dnt, delete)


@pytest.fixture
def small() -> SmallTenant:
    return build_small_tenant()


@pytest.fixture
def emulator(small: SmallTenant) -> Iterator[EntraEmulator]:
    with EntraEmulator(small.tenant) as emu:
        emu.register_app(CLIENT_ID, secret=SECRET)
        yield emu


def make_settings(emu: EntraEmulator, **overrides: Any) -> GraphSettings:
    settings = GraphSettings(
        tenant_id=emu.tenant_id,
        client_id=CLIENT_ID,
        credential=ClientSecret(SECRET, "test"),
        authority_host=emu.authority_host,
        graph_url=emu.graph_url,
        ca_bundle=emu.ca_file,
        timeout=5.0,
        retry=FAST_RETRY,
    )
    return replace(settings, **overrides)


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
