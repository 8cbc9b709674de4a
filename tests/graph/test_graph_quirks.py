"""The real Graph's rough edges (entrasync.sim.quirks) as the Graph adapter sees them, and the
emulator's random faults (entrasync.sim.faults) that the soak test builds on."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest
from graph_helpers import FAST_RETRY, SmallTenant

from entrasync.domain.entra import USER_FIELDS
from entrasync.errors import ConfigError, ExitCode, GraphUnavailable
from entrasync.graph import GraphClient, RetryPolicy, group_batch_stream
from entrasync.sim import EntraEmulator, Expiry, FaultKind, Quirks

# -- partial items -----------------------------------------------------------------------------


def test_partial_items_carry_the_changed_properties_and_some_others(
    client: GraphClient, emulator: EntraEmulator, small: SmallTenant
) -> None:
    first = client.read_users({})
    list(first)
    emulator.quirks = Quirks(partial_users=True, seed=2)
    extra = [small.tenant.add_user(f"x{n}@contoso.com") for n in range(6)]
    first_links = first.delta_links
    second = client.read_users(first_links)
    created = {u.id: u for p in second for u in p.users}
    assert all(created[u].complete for u in extra)  # new users: everything is news
    for n, user in enumerate(extra):
        small.tenant.update_user(user, display_name=f"D{n}", employee_id=None)
    third = client.read_users(second.delta_links)
    items = {u.id: u for p in third for u in p.users}
    assert set(items) == set(extra)
    for n, user in enumerate(extra):
        item = items[user]
        assert {"display_name", "employee_id"} <= item.present
        assert (item.display_name, item.employee_id) == (f"D{n}", None)
    left_out = Counter(name for u in items.values() for name in USER_FIELDS - u.present)
    assert sum(left_out.values()) >= 6, left_out  # the quirk did leave properties out


# -- replays ---------------------------------------------------------------------------------


def test_replays_repeat_items_within_a_round(
    client_for: Callable[..., GraphClient], emulator: EntraEmulator, small: SmallTenant
) -> None:
    emulator.quirks = Quirks(replays=0.5, seed=4)
    for n in range(10):
        small.tenant.add_user(f"r{n}@contoso.com")
    client = client_for(page_size=3)
    ids = [u.id for p in client.read_users({}) for u in p.users]
    assert len(ids) > len(set(ids)) == 14
    groups = list(client.read_groups([small.dnt, small.delete], {}))
    members = [(c.group_id, c.member_id) for p in groups for c in p.changes]
    assert set(members) == {
        (small.dnt, small.alice),
        (small.dnt, small.bob),
        (small.delete, small.carol),
    }


# -- a group's members split over pages --------------------------------------------------------


def test_a_groups_members_come_split_over_pages_removals_first(
    client_for: Callable[..., GraphClient], emulator: EntraEmulator, small: SmallTenant
) -> None:
    client = client_for(page_size=2)
    tenant = small.tenant
    people = [tenant.add_user(f"m{n}@contoso.com") for n in range(8)]
    tenant.add_members(small.dnt, people[:4])
    first = client.read_groups([small.dnt, small.delete], {})
    list(first)
    emulator.quirks = Quirks(split_members=True, seed=8)
    tenant.remove_member(small.dnt, people[0])
    tenant.remove_member(small.dnt, small.alice)
    tenant.add_members(small.dnt, people[4:8])
    pages = list(client.read_groups([small.dnt, small.delete], first.delta_links))
    on_pages = [p for p in pages if any(c.group_id == small.dnt for c in p.changes)]
    assert len(on_pages) >= 3  # the same group on several pages
    order = [c.removed for p in pages for c in p.changes]
    assert order == sorted(order, reverse=True)  # every removal before any addition
    net = {(c.member_id, c.removed) for p in pages for c in p.changes}
    assert net == {(people[0], True), (small.alice, True)} | {(m, False) for m in people[4:]}


# -- expired tokens ----------------------------------------------------------------------------


@pytest.mark.parametrize("expiry", list(Expiry))
def test_every_way_of_refusing_an_expired_token_resyncs(
    client: GraphClient, emulator: EntraEmulator, small: SmallTenant, expiry: Expiry
) -> None:
    emulator.quirks = Quirks(expiry=expiry)
    users = client.read_users({})
    list(users)
    groups = client.read_groups([small.dnt], {})
    list(groups)
    small.tenant.expire_delta_tokens()
    again = client.read_users(users.delta_links)
    pages = list(again)
    assert again.resynced == {"users"} and pages[0].resync and pages[0].full
    regroup = client.read_groups([small.dnt], groups.delta_links)
    assert {c.member_id for p in regroup for c in p.changes} == {small.alice, small.bob}
    assert regroup.resynced == {group_batch_stream([small.dnt])}
    status = 410 if expiry is Expiry.GONE else 400
    assert emulator.log.count(r"/delta", status=status) == 2


# -- a 404 inside a delta round ----------------------------------------------------------------


def test_a_watched_group_deleted_between_pages_restarts_the_stream_in_full(
    client_for: Callable[..., GraphClient], emulator: EntraEmulator, small: SmallTenant
) -> None:
    emulator.quirks = Quirks(vanished_404=True)
    client = client_for(page_size=1)
    rnd = client.read_groups([small.dnt, small.delete], {})
    pages = iter(rnd)
    first = next(pages)
    assert first.full and not first.resync
    small.tenant.delete_group(small.delete)  # between two pages of the round
    rest = list(pages)
    assert emulator.log.count(r"/groups/delta", status=404) == 1
    restarted = [p for p in rest if p.first]
    assert len(restarted) == 1 and restarted[0].resync and restarted[0].full
    after = rest[rest.index(restarted[0]) :]
    seen = {g for p in after for g in p.seen_groups}
    assert seen == {small.dnt}  # the deleted group is simply absent from the full round
    assert {c.member_id for p in after for c in p.changes} == {small.alice, small.bob}
    assert rnd.resynced == {group_batch_stream([small.dnt, small.delete])}


def test_a_user_deleted_between_pages_restarts_the_users_round(
    client_for: Callable[..., GraphClient], emulator: EntraEmulator, small: SmallTenant
) -> None:
    emulator.quirks = Quirks(vanished_404=True)
    client = client_for(page_size=2)
    rnd = client.read_users({})
    pages = iter(rnd)
    next(pages)
    small.tenant.delete_user(small.dave, permanent=True)
    rest = list(pages)
    assert rnd.resynced == {"users"}
    restart = next(i for i, p in enumerate(rest) if p.first)
    ids = {u.id for p in rest[restart:] for u in p.users}
    assert ids == {small.alice, small.bob, small.carol}


def test_a_404_that_persists_is_exit_69_not_an_empty_group(
    client_for: Callable[..., GraphClient], emulator: EntraEmulator, small: SmallTenant
) -> None:
    client = client_for(page_size=1)
    emulator.faults.add(r"/groups/delta.*skiptoken", status=404, times=None)
    with pytest.raises(GraphUnavailable) as caught:
        list(client.read_groups([small.dnt], {}))
    assert caught.value.exit_code == ExitCode.UNAVAILABLE
    assert "404" in str(caught.value)


# -- pages of varying size ---------------------------------------------------------------------


def test_ragged_pages_and_empty_pages_with_a_next_link(
    client_for: Callable[..., GraphClient], emulator: EntraEmulator, small: SmallTenant
) -> None:
    emulator.quirks = Quirks(ragged_pages=True, seed=21)
    for n in range(30):
        small.tenant.add_user(f"p{n}@contoso.com")
    client = client_for(page_size=5)
    pages = list(client.read_users({}))
    sizes = [len(p.users) for p in pages]
    assert max(sizes) <= 5 and 0 in sizes[:-1]  # an empty page that was not the last
    assert len(set(sizes)) >= 3
    assert len({u.id for p in pages for u in p.users}) == 34


# -- random faults -----------------------------------------------------------------------------


def test_random_faults_are_seeded_and_cover_every_kind(emulator: EntraEmulator) -> None:
    def draws(seed: int) -> list[int | None]:
        emulator.faults.random(rate=0.5, seed=seed)
        path = "/v1.0/users/delta()?$deltatoken=abc"
        return [f.status if f else None for f in map(emulator.faults.match, [path] * 200)]

    assert draws(3) == draws(3)
    assert draws(3) != draws(4)
    injected = emulator.faults.injected
    assert set(injected) == set(FaultKind)
    assert 0.4 < sum(injected.values()) / emulator.faults.drawn < 0.6
    # Only a round's first request (a delta token) is refused as expired: not an initial
    # request, nor a page of a round, nor the token endpoint.
    emulator.faults.random(rate=1.0, seed=1)
    paths = (
        "/v1.0/users/delta()?$select=id",
        "/v1.0/groups/delta()?$skiptoken=abc",
        "/tenant/oauth2/v2.0/token",
    )
    for path in paths:
        for _ in range(50):
            fault = emulator.faults.match(path)
            assert fault is not None and fault.status not in (400, 410)
    assert emulator.faults.match("/v1.0/groups/abc") is None  # not covered by default
    emulator.faults.clear()
    assert emulator.faults.match("/v1.0/$batch") is None


def test_reads_survive_a_quarter_of_requests_faulted(
    client_for: Callable[..., GraphClient], emulator: EntraEmulator, small: SmallTenant
) -> None:
    retry = RetryPolicy(
        max_attempts=12, max_total=20.0, backoff_base=0.01, backoff_max=0.05, max_retry_after=0.1
    )
    client = client_for(retry=retry, page_size=1)
    emulator.faults.random(rate=0.25, seed=99, retry_after=(0.0, 0.05))
    for n in range(5):
        small.tenant.add_user(f"s{n}@contoso.com")
    users = client.read_users({})
    assert len({u.id for p in users for u in p.users}) == 9
    groups = client.read_groups([small.dnt, small.delete], {})
    list(groups)
    small.tenant.add_member(small.delete, small.dave)
    again = client.read_groups([small.dnt, small.delete], groups.delta_links)
    changes = {(c.member_id, c.removed) for p in again for c in p.changes}
    assert (small.dave, False) in changes
    assert client.users_exist([small.alice, small.bob]) == {small.alice: True, small.bob: True}
    assert sum(emulator.faults.injected.values()) >= 3
    assert FAST_RETRY.max_attempts < retry.max_attempts


def test_a_404_reading_users_names_the_graph_url(
    client: GraphClient, emulator: EntraEmulator
) -> None:
    emulator.faults.add(r"^/v1\.0/users\?", status=404)
    with pytest.raises(ConfigError) as caught:
        client.check_user_read()
    assert "entra.graph_url" in str(caught.value)
