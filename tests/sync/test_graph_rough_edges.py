"""The real Graph's rough edges (entrasync.sim.quirks) through the whole read path: MSAL, the
SDK, the Graph adapter, the mirror and a sync cycle, on both stores."""

from __future__ import annotations

import random
from typing import Any

import pytest
from sqlalchemy import select
from syncworld import World, later

from entrasync.sim import Expiry, Quirks
from entrasync.store.schema import EntraKeyRow, EntraMemberRow, EntraUserRow

IDENTITY = ("mail", "proxy_addresses", "employee_id", "on_premises_sam", "on_premises_domain")


def _rows(world: World) -> dict[str, EntraUserRow]:
    with world.store.reading() as session:
        rows = session.scalars(select(EntraUserRow)).all()
        session.expunge_all()
    return {r.object_id: r for r in rows}


def _keys(world: World, user_id: str) -> set[tuple[str, str]]:
    with world.store.reading() as session:
        return {
            (k, v)
            for k, v in session.execute(
                select(EntraKeyRow.kind, EntraKeyRow.value).where(EntraKeyRow.object_id == user_id)
            )
        }


def _edges(world: World) -> set[tuple[str, str]]:
    query = select(EntraMemberRow.group_id, EntraMemberRow.member_id)
    with world.store.reading() as session:
        return {(g, m) for g, m in session.execute(query)}


def _tenant_edges(world: World) -> set[tuple[str, str]]:
    t = world.tenant
    with t.lock:
        return {(g, m) for g in (world.dnt, world.delete) for m in t.groups[g].members}


def _add_people(world: World, n: int) -> list[str]:
    return [
        world.tenant.add_user(
            f"user{i}@contoso.com",
            employee_id=f"E{i}",
            proxy_addresses=[f"SMTP:user{i}@contoso.com", f"smtp:u{i}@fabrikam.com"],
            on_premises_sam_account_name=f"user{i}",
            on_premises_domain_name="CONTOSO",
        )
        for i in range(n)
    ]


def test_partial_user_items_leave_unchanged_properties_alone(world: World) -> None:
    users = _add_people(world, 12)
    world.sync(later(0))
    before = _rows(world)
    keys_before = {u: _keys(world, u) for u in users}
    world.emu.quirks = Quirks(partial_users=True, seed=5)
    for n, user in enumerate(users):
        world.tenant.update_user(user, display_name=f"Renamed {n}")
    world.sync(later(1))
    after = _rows(world)
    for user in users:
        assert after[user].display_name == f"Renamed {users.index(user)}"
        for column in IDENTITY:
            assert getattr(after[user], column) == getattr(before[user], column), column
        assert after[user].upn == before[user].upn
        assert _keys(world, user) == keys_before[user]


def test_an_explicit_null_clears_a_property(world: World) -> None:
    (alice,) = _add_people(world, 1)
    world.sync(later(0))
    world.emu.quirks = Quirks(partial_users=True, seed=1)
    world.tenant.update_user(alice, employee_id=None, mail=None)
    world.sync(later(1))
    row = _rows(world)[alice]
    assert row.employee_id is None and row.mail is None
    assert row.proxy_addresses == ["SMTP:user0@contoso.com", "smtp:u0@fabrikam.com"]
    kinds = {k for k, _ in _keys(world, alice)}
    assert "employee_id" not in kinds
    assert ("logon", "contoso\\user0") in _keys(world, alice)


def test_a_partial_rename_keeps_the_old_upn_as_evidence(world: World) -> None:
    (alice,) = _add_people(world, 1)
    world.sync(later(0))
    world.emu.quirks = Quirks(partial_users=True, seed=3)
    world.tenant.rename_upn(alice, "alice.new@contoso.com", update_mail=False)
    world.sync(later(1))
    row = _rows(world)[alice]
    assert row.upn == "alice.new@contoso.com"
    assert row.previous_upns == ["user0@contoso.com"]
    assert row.employee_id == "E0" and row.mail == "user0@contoso.com"
    assert ("upn", "user0@contoso.com") in _keys(world, alice)


def _mutate(world: World, rng: random.Random, users: list[str]) -> None:
    t = world.tenant
    for _ in range(6):
        group = rng.choice([world.dnt, world.delete])
        user = rng.choice(users)
        with t.lock:
            member = user in t.groups[group].members
        if member:
            t.remove_member(group, user)
        else:
            t.add_member(group, user)
    t.update_user(rng.choice(users), display_name=f"n{rng.random():.6f}")


QUIRKY = [
    pytest.param(Quirks(replays=0.4, seed=11), id="replays"),
    pytest.param(Quirks(split_members=True, seed=12), id="split-members"),
    pytest.param(Quirks(ragged_pages=True, seed=13), id="ragged-pages"),
    pytest.param(
        Quirks(partial_users=True, replays=0.3, split_members=True, ragged_pages=True, seed=14),
        id="all",
    ),
]


@pytest.mark.parametrize("quirks", QUIRKY)
def test_the_mirror_converges_under_quirky_delta_rounds(world: World, quirks: Quirks) -> None:
    world.emu.quirks = quirks
    world.emu.page_size = 3
    users = _add_people(world, 15)
    rng = random.Random(7)
    world.tenant.add_members(world.dnt, users[:6])
    world.tenant.add_members(world.delete, users[6:9])
    for hour in range(6):
        if hour:
            _mutate(world, rng, users)
        result = world.sync(later(hour))
        assert result.status in ("ok", "held"), result
        assert _edges(world) == _tenant_edges(world), hour
    rows = _rows(world)
    with world.tenant.lock:
        for user in users:
            sim: Any = world.tenant.users[user]
            assert rows[user].display_name == sim.display_name
            assert rows[user].employee_id == sim.employee_id


@pytest.mark.parametrize("expiry", list(Expiry))
def test_an_expired_token_is_resynced_whichever_way_graph_says_it(
    world: World, expiry: Expiry
) -> None:
    world.emu.quirks = Quirks(expiry=expiry)
    users = _add_people(world, 4)
    world.tenant.add_members(world.dnt, users[:2])
    world.sync(later(0))
    world.tenant.expire_delta_tokens()
    world.tenant.remove_member(world.dnt, users[0])
    world.tenant.add_member(world.delete, users[3])
    world.emu.log.clear()
    result = world.sync(later(1))
    assert result.status in ("ok", "held")
    assert result.resync
    status = 410 if expiry is Expiry.GONE else 400
    assert world.emu.log.count(r"/delta", status=status) >= 1
    assert _edges(world) == _tenant_edges(world)
