"""The emulator, its generated tenant and a config file pointing entrasync at both."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from entrasync import bootstrap
from entrasync.bootstrap import GraphFactory
from entrasync.config import Config, load_config
from entrasync.graph import MsalCaches
from entrasync.sim import EntraEmulator
from entrasync.sim.generate import GeneratedTenant
from entrasync.sim.server import MAX_TOP

CLIENT_ID = "0b5d7c3e-0000-4000-8000-0000000be7c4"
SECRET = "Bench~Secret.Not-In-Logs_01"  # noqa: S105 - the emulator's test app
GRAPH_PATH = r"^/v1\.0/"


def write_config(path: Path, emu: EntraEmulator, gen: GeneratedTenant, store_url: str) -> Path:
    path.write_text(
        f"""
[entra]
tenant_id = "{emu.tenant_id}"
client_id = "{CLIENT_ID}"
authority_host = "{emu.authority_host}"
graph_url = "{emu.graph_url}"
ca_bundle = "{emu.ca_file}"

[groups]
dnt = ["{gen.dnt_group}"]
delete = ["{gen.delete_group}"]
nested = true

[store]
url = "{store_url}"

[account]
purchased_licenses = 10000000

[safety]
purge_delay = "24h"
max_purges = "100%"
max_untracks = "100%"
max_retracks = "100%"
max_merges = "100%"
""",
        encoding="utf-8",
    )
    return path


def graph_factory(config: Config, caches: MsalCaches | None = None) -> GraphFactory:
    """A client per cycle, as the daemon builds them (sharing `caches` like the daemon does)."""
    return bootstrap.graph_factory(config, {"ENTRASYNC_CLIENT_SECRET": SECRET}, caches=caches)


def load(path: Path) -> Config:
    return load_config(path)


# -- request arithmetic --------------------------------------------------------------------


def pages(items: int, size: int) -> int:
    """Pages a listing of `items` needs (an empty listing is still one request)."""
    return max(1, math.ceil(items / size))


@dataclass(frozen=True)
class RequestModel:
    """What the tenant costs in requests, from page counts (no requests sent)."""

    streams: int  # delta streams a steady cycle reads: one request each
    initial_min: int  # the page minimum of a first full round of every stream
    full_listing: int  # /users + transitiveMembers of each watched group with $top=999


def request_model(gen: GeneratedTenant, page_size: int) -> RequestModel:
    tenant = gen.tenant
    users = sum(1 for u in tenant.users.values() if not u.soft_deleted)
    watched = [gen.dnt_group, gen.delete_group]
    # The watched groups share one groups/delta stream (<= 50 ids per $filter); a group costs
    # its members, an empty one still one slot. Each nested group gets a stream of its own.
    batch = sum(max(1, len(tenant.groups[g].members)) for g in watched)
    children = sorted(
        {m for g in watched for m, kind in tenant.transitive_members(g) if kind == "group"}
    )
    initial = pages(users, page_size) + pages(batch, page_size)
    initial += sum(pages(len(tenant.groups[c].members), page_size) for c in children)
    listing = pages(users, MAX_TOP) + sum(
        pages(len(tenant.transitive_members(g)), MAX_TOP) for g in watched
    )
    return RequestModel(streams=2 + len(children), initial_min=initial, full_listing=listing)
