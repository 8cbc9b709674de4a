"""A tenant emulator, a migrated store and a config that points one at the other."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from testkit import report as report  # re-exported for the tests

from entrasync.config import Config, load_config
from entrasync.domain.reports import parse_reports
from entrasync.graph import GraphClient, settings_from_config
from entrasync.services.ingest import ingest_reports
from entrasync.sim import EntraEmulator, Tenant
from entrasync.store.db import Store
from entrasync.sync.cycle import CycleResult, run_cycle

CLIENT_ID = "0b5d7c3e-0000-4000-8000-00000000a11e"
SECRET = "Sync~Test.Secret-Not-In-Logs_77"
T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@dataclass
class World:
    tenant: Tenant
    emu: EntraEmulator
    store: Store
    config_path: Path
    dnt: str
    delete: str

    def config(self) -> Config:
        return load_config(self.config_path)

    def sync(self, now: datetime = T0, **kw: Any) -> CycleResult:
        config = self.config()
        settings = settings_from_config(config.entra, {"ENTRASYNC_CLIENT_SECRET": SECRET})
        return run_cycle(self.store, config, lambda: GraphClient(settings), now, **kw)

    def ingest(self, *lines: str, now: datetime = T0) -> None:
        ingest_reports(self.store, self.config(), parse_reports(lines), now, source="test")

    def configure(self, extra: str) -> None:
        base = self.config_path.read_text().split("# extra\n")[0]
        self.config_path.write_text(base + "# extra\n" + extra)


def make_world(
    tmp_path: Path, store_url: str
) -> Iterator[World]:  # the `world` fixture (conftest.py)
    tenant = Tenant()
    dnt = tenant.add_group("Do Not Track")
    delete = tenant.add_group("Delete")
    with EntraEmulator(tenant) as emu:
        emu.register_app(CLIENT_ID, secret=SECRET)
        path = tmp_path / "entrasync.toml"
        path.write_text(
            f"""
[entra]
tenant_id = "{emu.tenant_id}"
client_id = "{CLIENT_ID}"
authority_host = "{emu.authority_host}"
graph_url = "{emu.graph_url}"
ca_bundle = "{emu.ca_file}"

[groups]
dnt = ["{dnt}"]
delete = ["{delete}"]

[store]
url = "{store_url}"

[account]
purchased_licenses = 100

[safety]
purge_delay = "24h"
max_purges = 50
max_untracks = 50
max_retracks = 50
max_merges = 50
# extra
""",
            encoding="utf-8",
        )
        store = Store(store_url)
        yield World(tenant, emu, store, path, dnt, delete)
        store.engine.dispose()


def later(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)
