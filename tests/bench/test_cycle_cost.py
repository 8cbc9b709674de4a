"""What a cycle costs the store does not grow with the store (issue 16): the same cycle on a
store ten times larger runs the same statements, and on SQLite the same amount of work
(virtual-machine steps, counted with a progress handler), with no full scan of a table that
grows with the tenant. Measured for a cycle with no changes and for one in which members
join the DNT group, with watched groups of the same size at both store sizes, and with
watched groups that grow with the tenant (the bench's shape: 12% of the users): the
membership queries examine only the objects queued since they were last in line
(store/changes.py), not every member."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from storecost import Cost, measured
from testkit import BACKENDS

from bench import storegen
from bench.scenario import T0, sized
from bench.world import CLIENT_ID, SECRET, graph_factory, load, write_config
from entrasync.graph import MsalCaches
from entrasync.sim import EntraEmulator
from entrasync.sim.generate import generate_tenant
from entrasync.store.db import Store
from entrasync.sync.cycle import run_cycle

SIZES = (150, 1500)
SETTLED = T0 + timedelta(hours=26)  # past the purge delay (24h) of the first sync
CHURN = 8
# Tables whose size follows the tenant or its history: never read whole by a cycle.
BIG = ("users", "identifiers", "agents", "agent_logons", "activity", "entra_users", "entra_keys")


@dataclass
class _Sized:
    store: Store
    cycle: Any  # (now) -> CycleResult
    tenant: Any
    dnt: str
    movers: list[str]


@pytest.fixture(params=BACKENDS)
def sized_world(
    request: pytest.FixtureRequest, make_store_url: Any, tmp_path: Path
) -> Iterator[Any]:
    """Factory: a synced store of `users` users (watched groups of a fixed size)."""
    backend = request.param
    opened: list[tuple[EntraEmulator, Store]] = []

    def make(users: int, *, grown: bool = False) -> _Sized:
        scenario = sized(users, rows_per_user=4)
        if not grown:
            scenario = replace(scenario, dnt=20, nested=4, delete=4)
        gen = generate_tenant(
            users, dnt=scenario.dnt, delete=scenario.delete, nested=scenario.nested, seed=3
        )
        emu = EntraEmulator(gen.tenant, workdir=tmp_path / f"emu-{users}")
        emu.__enter__()
        emu.register_app(CLIENT_ID, secret=SECRET)
        url = make_store_url(backend)
        storegen.build_store(url, scenario, T0)
        config = load(write_config(tmp_path / f"es-{users}.toml", emu, gen, url))
        store = Store(url)
        opened.append((emu, store))
        factory = graph_factory(config, MsalCaches())
        watched = set(gen.tenant.transitive_members(gen.dnt_group))
        watched |= set(gen.tenant.transitive_members(gen.delete_group))
        ids = {m for m, _ in watched}
        movers = [u for u in reversed(gen.user_ids) if u not in ids][:CHURN]
        world = _Sized(
            store,
            lambda now: run_cycle(store, config, factory, now),
            gen.tenant,
            gen.dnt_group,
            movers,
        )
        world.cycle(T0)  # the first sync links every record
        world.cycle(SETTLED)  # the purge delay has passed: the Delete members are purged
        return world

    yield make
    for emu, store in opened:
        store.engine.dispose()
        emu.__exit__(None, None, None)


def _costs(world: _Sized) -> tuple[Cost, Cost]:
    steady = measured(world.store, lambda: world.cycle(SETTLED + timedelta(hours=1)))
    world.tenant.add_members(world.dnt, world.movers)
    churn_result: list[Any] = []
    churn = measured(
        world.store, lambda: churn_result.append(world.cycle(SETTLED + timedelta(hours=2)))
    )
    assert churn_result[0].applied["untrack"] == CHURN
    return steady, churn


@pytest.mark.parametrize(
    "grown", [False, True], ids=["watched-groups-fixed", "watched-groups-grow-with-the-tenant"]
)
def test_a_cycle_costs_the_same_on_a_store_ten_times_larger(sized_world: Any, grown: bool) -> None:
    small, large = sized_world(SIZES[0], grown=grown), sized_world(SIZES[1], grown=grown)
    (steady_s, churn_s), (steady_l, churn_l) = _costs(small), _costs(large)
    assert len(steady_l.statements) == len(steady_s.statements)
    assert len(churn_l.statements) == len(churn_s.statements)
    if small.store.dialect != "sqlite":
        return
    # ten times the store (and, grown, 180 watched members against 18), (almost) the same
    # work: a query reading every user, or examining every watched member each cycle, would
    # cost about ten times as much here
    assert steady_l.steps <= steady_s.steps * 1.25 + 20, (steady_s.steps, steady_l.steps)
    assert churn_l.steps <= churn_s.steps * 1.25 + 20, (churn_s.steps, churn_l.steps)
    for cost in (steady_l, churn_l):
        assert cost.full_scans(large.store, BIG) == Counter()
