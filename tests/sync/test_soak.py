"""Soak: hundreds of cycles against a randomly mutating tenant, a fifth or more of the
requests faulted (429 + Retry-After, 503, HTML 502, reset connections, delta tokens refused
as 410 / 400 syncStateNotFound / resyncRequired) and Graph's rough edges on (partial user
items, replays, members split over pages in any order, ragged pages, a 404 mid-round).

Two tenants get the same mutations step by step: a clean one read by one cycle per step,
and a faulty one whose cycles are retried until one succeeds (failed cycles leave pages
applied and delta links unmoved). At the end the two stores must be the same, row for row,
but for the bookkeeping of the runs themselves.
"""

from __future__ import annotations

import dataclasses
import os
import random
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData, create_engine, select
from syncworld import CLIENT_ID, SECRET, T0
from testkit import BACKENDS, report

from entrasync.config import load_config
from entrasync.domain.reports import parse_reports
from entrasync.errors import EntrasyncError
from entrasync.graph import GraphClient, settings_from_config
from entrasync.graph.settings import RetryPolicy
from entrasync.services.ingest import ingest_reports
from entrasync.sim import EntraEmulator, Tenant
from entrasync.sim.quirks import Expiry, Quirks
from entrasync.store.db import Store
from entrasync.sync.cycle import run_cycle

STEPS = int(os.environ.get("ENTRASYNC_SOAK_STEPS", "100"))
SEED = int(os.environ.get("ENTRASYNC_SOAK_SEED", "2026"))  # replay a failure with its seed
FAULT_RATE = 0.3
DNT, DELETE, NESTED = (
    "11111111-1111-4111-8111-111111111111",
    "22222222-2222-4222-8222-222222222222",
    "33333333-3333-4333-8333-333333333333",
)
# What a failed cycle may leave behind that a clean run does not have: its own run record,
# and the delta links / full-round times of rounds it restarted after a refused token.
BOOKKEEPING = {"runs", "sync_state", "daemon_state", "outbox"}
# `updated_at` of a mirrored user is when it was last read; run ids and the audit hashes
# that cover them differ between any two runs.
# (`seen_round`: the random id of the full round that last saw a membership edge)
UNSTABLE_COLUMNS = {"updated_at", "run_id", "hash", "prev_hash", "seen_round"}
# The queue of changed objects is a set: which objects are queued, not in what order or how
# often (its `seq` follows the order of the writes, which retries and resyncs change).
QUEUES = {"changed_objects": "seq"}
FAST_RETRIES = RetryPolicy(
    max_attempts=2, max_total=5, backoff_base=0.01, backoff_max=0.05, max_retry_after=0.2
)


@dataclass
class Side:
    tenant: Tenant
    emu: EntraEmulator
    store: Store
    config_path: Path

    def cycle(self, step: int) -> bool:
        config = load_config(self.config_path)
        settings = settings_from_config(config.entra, {"ENTRASYNC_CLIENT_SECRET": SECRET})
        settings = dataclasses.replace(settings, retry=FAST_RETRIES, page_size=4)
        try:
            run_cycle(self.store, config, lambda: GraphClient(settings), T0 + step * _STEP)
        except EntrasyncError:
            return False
        return True


_STEP = timedelta(minutes=1)


@contextmanager
def _side(tmp: Path, url: str, quirks: Quirks | None) -> Iterator[Side]:
    tenant = Tenant()
    for group, name in ((DNT, "Do Not Track"), (DELETE, "Delete"), (NESTED, "Contractors")):
        tenant.add_group(name, id=group)
    tenant.add_member(DNT, NESTED)  # a nested group: its members are DNT members too
    with EntraEmulator(tenant, page_size=4, quirks=quirks, batch_seed=3) as emu:
        emu.register_app(CLIENT_ID, secret=SECRET)
        tmp.mkdir()
        path = tmp / "entrasync.toml"
        path.write_text(_config(emu, url), encoding="utf-8")
        Store(url, check_schema=False).upgrade()
        store = Store(url)
        try:
            yield Side(tenant, emu, store, path)
        finally:
            store.engine.dispose()


def _config(emu: EntraEmulator, url: str) -> str:
    return f"""
[entra]
tenant_id = "{emu.tenant_id}"
client_id = "{CLIENT_ID}"
authority_host = "{emu.authority_host}"
graph_url = "{emu.graph_url}"
ca_bundle = "{emu.ca_file}"

[groups]
dnt = ["{DNT}"]
delete = ["{DELETE}"]

[store]
url = "{url}"

[account]
purchased_licenses = 1000

[safety]
purge_delay = "30d"
max_purges = "100%"
max_untracks = "100%"
max_retracks = "100%"
max_merges = "100%"
"""


class Mutations:
    """A random but replayable life of a tenant: hires, renames, departures, returns and
    group changes. The same instance drives both tenants (ids are chosen here)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.users: list[str] = []
        self.deleted: set[str] = set()
        self.serial = 0

    def new_id(self) -> str:
        self.serial += 1
        return f"00000000-0000-4000-8000-{self.serial:012d}"

    def step(self) -> list[tuple[str, tuple[Any, ...]]]:
        ops: list[tuple[str, tuple[Any, ...]]] = []
        for _ in range(self.rng.randint(0, 3)):
            ops.append(self._one())
        return ops

    def _one(self) -> tuple[str, tuple[Any, ...]]:
        live = [u for u in self.users if u not in self.deleted]
        roll = self.rng.random()
        if roll < 0.15 or len(live) < 4:
            uid = self.new_id()
            self.users.append(uid)
            return "add_user", (f"p{self.serial}@contoso.com", uid)
        user = self.rng.choice(live)
        if roll < 0.25:
            self.serial += 1
            return "rename_upn", (user, f"r{self.serial}@fabrikam.com")
        if roll < 0.32:
            self.serial += 1
            return "update_user", (user, f"E{self.serial}")
        if roll < 0.37:
            self.deleted.add(user)
            return "delete_user", (user,)
        if roll < 0.42 and self.deleted:
            back = self.rng.choice(sorted(self.deleted))
            self.deleted.discard(back)
            return "restore_user", (back,)
        group = self.rng.choice((DNT, DELETE, NESTED))
        verb = "add_member" if roll < 0.75 else "remove_member"
        return verb, (group, user)


def _apply(tenant: Tenant, op: str, args: tuple[Any, ...]) -> None:
    if op == "add_user":
        upn, uid = args
        tenant.add_user(upn, id=uid, employee_id=f"E-{uid[-4:]}")
    elif op == "rename_upn":
        tenant.rename_upn(*args)
    elif op == "update_user":
        user, employee_id = args
        tenant.update_user(user, employee_id=employee_id)
    elif op == "delete_user":
        tenant.delete_user(*args)
    elif op == "restore_user":
        tenant.restore_user(*args)
    elif op == "add_member":
        group, user = args
        if user not in tenant.groups[group].members:
            tenant.add_member(group, user)
    elif op == "remove_member":
        group, user = args
        if user in tenant.groups[group].members:
            tenant.remove_member(group, user)


def _seed_store(side: Side, mutations: Mutations) -> None:
    """Agents report for the first people before the first cycle (same on both sides)."""
    lines = [
        report(f"CONTOSO\\p{i}", "PC", upn=f"p{i}@contoso.com", events=2)
        for i in range(1, mutations.serial + 1, 2)
    ]
    config = load_config(side.config_path)
    ingest_reports(side.store, config, parse_reports(lines), T0, source="soak")


def _comparable(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table but the bookkeeping, without the columns that only say when
    a row was last read (a resync re-reads everyone) or which run wrote it."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # expression indexes are not reflected
            metadata = MetaData()
            metadata.reflect(conn)
            return {
                table.name: _rows(conn, table)
                for table in metadata.sorted_tables
                if table.name not in BOOKKEEPING
            }
    finally:
        engine.dispose()


def _rows(conn: Any, table: Any) -> list[tuple[Any, ...]]:
    if table.name in QUEUES:
        kept = [c for c in table.columns if c.name != QUEUES[table.name]]
        return sorted({tuple(r) for r in conn.execute(select(*kept))})
    columns = [c for c in table.columns if c.name not in UNSTABLE_COLUMNS]
    order = [c for c in table.primary_key.columns if c.name not in UNSTABLE_COLUMNS] or columns
    return [tuple(r) for r in conn.execute(select(*columns).order_by(*order))]


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_faulty_graph_converges_to_the_clean_run(
    backend: str, make_store_url: Any, tmp_path: Path
) -> None:
    mutations = Mutations(seed=SEED)
    rough = Quirks(
        partial_users=True,
        replays=0.1,
        split_members=True,
        ragged_pages=True,
        vanished_404=True,
        expiry=Expiry.BAD_REQUEST,
        seed=SEED + 1,
    )
    with ExitStack() as stack:
        clean = stack.enter_context(_side(tmp_path / "clean", make_store_url(backend), None))
        faulty = stack.enter_context(_side(tmp_path / "faulty", make_store_url(backend), rough))
        for _ in range(12):
            for op, args in [mutations._one()]:
                for side in (clean, faulty):
                    _apply(side.tenant, op, args)
        for side in (clean, faulty):
            _seed_store(side, mutations)
        faulty.emu.faults.random(rate=FAULT_RATE, seed=SEED + 2, retry_after=(0.0, 0.2))

        cycles, failed = 0, 0
        for step in range(STEPS):
            for op, args in mutations.step():
                for side in (clean, faulty):
                    _apply(side.tenant, op, args)
            if step % 50 == 49:  # a week without a cycle: every delta token expires
                for side in (clean, faulty):
                    side.tenant.expire_delta_tokens()
            assert clean.cycle(step), f"the clean side failed at step {step}"
            for _attempt in range(30):
                cycles += 1
                if faulty.cycle(step):
                    break
                failed += 1
            else:
                pytest.fail(f"no cycle succeeded at step {step} in 30 attempts")

        injected = sum(faulty.emu.faults.injected.values())
        assert injected >= 0.2 * faulty.emu.faults.drawn
        assert failed >= 10, "the faults never made a cycle fail: the test proves nothing"
        assert STEPS + cycles >= 2 * STEPS + 10  # clean + faulty: a few hundred cycles
        assert _differences(_comparable(faulty.store.url), _comparable(clean.store.url)) == {}


def _differences(
    faulty: dict[str, list[tuple[Any, ...]]], clean: dict[str, list[tuple[Any, ...]]]
) -> dict[str, dict[str, list[tuple[Any, ...]]]]:
    """Per table, the rows only the faulty store has and those only the clean one has."""
    out = {}
    for table in sorted(set(faulty) | set(clean)):
        a, b = faulty.get(table, []), clean.get(table, [])
        if a != b:
            out[table] = {
                "faulty_only": [r for r in a if r not in b],
                "clean_only": [r for r in b if r not in a],
            }
    return out
