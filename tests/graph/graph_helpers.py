"""Helpers for the Graph adapter tests: a small tenant and GraphSettings with short retry
bounds, so that failure paths take fractions of a second."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from entrasync.graph import ClientSecret, GraphSettings, RetryPolicy
from entrasync.sim import EntraEmulator, Tenant
from entrasync.store.db import Store

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
    alice = tenant.add_user(
        "alice@contoso.com",
        employee_id="E1",
        on_premises_sam_account_name="alice",
        on_premises_domain_name="CONTOSO",
    )
    bob = tenant.add_user("bob@contoso.com")
    carol = tenant.add_user("carol@contoso.com")
    dave = tenant.add_user("dave@contoso.com")
    dnt = tenant.add_group("Do Not Track")
    delete = tenant.add_group("Delete")
    tenant.add_members(dnt, [alice, bob])
    tenant.add_member(delete, carol)
    return SmallTenant(tenant, alice, bob, carol, dave, dnt, delete)


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


def write_cli_config(tmp_path: Path, emu: EntraEmulator, dnt: list[str], delete: list[str]) -> Path:
    """A complete config file for the CLI: the emulator, the secret in a file, a migrated
    SQLite store."""
    secret = tmp_path / "client-secret"
    secret.write_text(SECRET + "\n")
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    Store(store_url, check_schema=False).upgrade()
    path = tmp_path / "entrasync.toml"
    path.write_text(
        f"""
[entra]
tenant_id = "{emu.tenant_id}"
client_id = "{CLIENT_ID}"
client_secret_file = "{secret}"
authority_host = "{emu.authority_host}"
graph_url = "{emu.graph_url}"
ca_bundle = "{emu.ca_file}"

[groups]
dnt = {json.dumps(dnt)}
delete = {json.dumps(delete)}

[store]
url = "{store_url}"

[account]
purchased_licenses = 10
""",
        encoding="utf-8",
    )
    return path
