"""Delta rounds against the emulator: full rounds, increments, paging, nesting, resyncs."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from graph_helpers import SmallTenant

from entrasync.domain.entra import (
    GroupPage,
    MembershipEdge,
    UserPage,
    effective_members,
    reachable_groups,
)
from entrasync.graph import GraphClient, child_group_stream, group_batch_stream
from entrasync.sim import EntraEmulator, generate_tenant


def users_of(pages: list[UserPage]) -> dict[str, str | None]:
    return {u.id: u.user_principal_name for p in pages for u in p.users}


def edges_of(pages: list[GroupPage]) -> set[tuple[str, str, str, bool]]:
    return {(c.group_id, c.member_id, c.member_kind, c.removed) for p in pages for c in p.changes}


def test_full_user_round_reads_every_identity_property(
    client: GraphClient, small: SmallTenant
) -> None:
    rnd = client.read_users({})
    pages = list(rnd)
    users = {u.id: u for p in pages for u in p.users}
    assert set(users) == {small.alice, small.bob, small.carol, small.dave}
    alice = users[small.alice]
    assert alice.user_principal_name == "alice@contoso.com"
    assert alice.mail == "alice@contoso.com"
    assert alice.proxy_addresses == ("SMTP:alice@contoso.com",)
    assert alice.employee_id == "E1"
    assert alice.on_premises_sam_account_name == "alice"
    assert alice.on_premises_domain_name == "CONTOSO"
    assert pages[0].first and pages[0].full and not pages[0].resync
    assert set(rnd.delta_links) == {"users"}
    assert rnd.full_streams == {"users"}
    assert rnd.resynced == frozenset()


def test_increments_after_mutations(client: GraphClient, small: SmallTenant) -> None:
    first = client.read_users({})
    list(first)
    tenant = small.tenant
    tenant.rename_upn(small.alice, "alice@newco.com")
    tenant.delete_user(small.bob)  # soft
    tenant.delete_user(small.carol, permanent=True)
    erin = tenant.add_user("erin@contoso.com")

    second = client.read_users(first.delta_links)
    pages = list(second)
    assert not any(p.full for p in pages)
    changed = {u.id: u for p in pages for u in p.users}
    assert set(changed) == {small.alice, erin}  # dave did not change: not reported
    alice = changed[small.alice]
    assert alice.user_principal_name == "alice@newco.com"
    assert alice.mail == "alice@newco.com"
    assert "smtp:alice@contoso.com" in alice.proxy_addresses
    removals = {r.id: r.permanent for p in pages for r in p.removals}
    assert removals == {small.bob: False, small.carol: True}
    assert second.full_streams == frozenset()

    third = client.read_users(second.delta_links)
    assert [u for p in third for u in p.users] == []


def test_paging_with_a_small_page_size(
    client_for: Callable[..., GraphClient], emulator: EntraEmulator
) -> None:
    tenant = emulator.tenant
    for n in range(23):
        tenant.add_user(f"extra{n}@contoso.com")
    client = client_for(page_size=5)
    rnd = client.read_users({})
    pages = list(rnd)
    assert len(pages) == 6  # 27 users, 5 per page
    ids = [u.id for p in pages for u in p.users]
    assert len(ids) == len(set(ids)) == 27
    assert [p.first for p in pages] == [True] + [False] * 5
    assert emulator.log.count(r"\$top") == 0  # delta pages are sized by Prefer, not $top
    assert emulator.log.count(r"/users/delta.*\$skiptoken") == 5


def test_delta_links_are_only_known_after_the_last_page(client: GraphClient) -> None:
    rnd = client.read_users({})
    with pytest.raises(RuntimeError):
        _ = rnd.delta_links


def test_group_membership_full_round_and_increments(
    client: GraphClient, small: SmallTenant
) -> None:
    first = client.read_groups([small.dnt, small.delete], {})
    pages = list(first)
    assert edges_of(pages) == {
        (small.dnt, small.alice, "user", False),
        (small.dnt, small.bob, "user", False),
        (small.delete, small.carol, "user", False),
    }
    stream = group_batch_stream([small.delete, small.dnt])
    assert set(first.delta_links) == {stream}
    assert first.streams[stream] == tuple(sorted([small.dnt, small.delete]))

    small.tenant.add_member(small.delete, small.dave)
    small.tenant.remove_member(small.dnt, small.bob)
    small.tenant.add_member(small.dnt, small.carol)
    small.tenant.remove_member(small.dnt, small.carol)  # net: no change, not reported
    second = client.read_groups([small.dnt, small.delete], first.delta_links)
    assert edges_of(list(second)) == {
        (small.delete, small.dave, "user", False),
        (small.dnt, small.bob, "user", True),
    }
    assert second.full_streams == frozenset()


def test_nested_groups_are_discovered_followed_and_cycles_end(
    client: GraphClient, small: SmallTenant
) -> None:
    tenant = small.tenant
    child = tenant.add_group("DNT contractors")
    grandchild = tenant.add_group("DNT contractors EU")
    tenant.add_member(child, small.dave)
    tenant.add_member(child, grandchild)
    tenant.add_member(grandchild, small.carol)
    tenant.add_member(grandchild, small.dnt)  # a cycle back to the watched group
    tenant.add_member(small.dnt, child)

    rnd = client.read_groups([small.dnt], {})
    pages = list(rnd)
    edges = edges_of(pages)
    assert (small.dnt, child, "group", False) in edges
    assert (child, small.dave, "user", False) in edges
    assert (grandchild, small.carol, "user", False) in edges
    assert (grandchild, small.dnt, "group", False) in edges
    assert set(rnd.delta_links) == {
        group_batch_stream([small.dnt]),
        child_group_stream(child),
        child_group_stream(grandchild),
    }
    assert rnd.full_streams == set(rnd.delta_links)
    mirror = [MembershipEdge(g, m, k) for g, m, k, removed in edges if not removed]  # type: ignore[arg-type]
    assert effective_members(mirror, [small.dnt]) == {
        small.dnt: {small.alice, small.bob, small.dave, small.carol}
    }

    # Next round: children come back from the stored links and report increments.
    tenant.remove_member(grandchild, small.carol)
    second = client.read_groups([small.dnt], rnd.delta_links)
    assert edges_of(list(second)) == {(grandchild, small.carol, "user", True)}
    assert second.full_streams == frozenset()
    assert set(second.delta_links) == set(rnd.delta_links)


def test_a_child_added_later_is_read_in_full_in_the_same_round(
    client: GraphClient, small: SmallTenant
) -> None:
    first = client.read_groups([small.dnt], {})
    list(first)
    child = small.tenant.add_group("late child")
    small.tenant.add_member(child, small.dave)
    small.tenant.add_member(small.dnt, child)
    second = client.read_groups([small.dnt], first.delta_links)
    pages = list(second)
    assert edges_of(pages) == {
        (small.dnt, child, "group", False),
        (child, small.dave, "user", False),
    }
    assert second.full_streams == {child_group_stream(child)}
    child_pages = [p for p in pages if p.stream == child_group_stream(child)]
    assert child_pages[0].full and child_pages[0].first


def test_nesting_off_ignores_child_groups(client: GraphClient, small: SmallTenant) -> None:
    child = small.tenant.add_group("child")
    small.tenant.add_member(child, small.dave)
    small.tenant.add_member(small.dnt, child)
    rnd = client.read_groups([small.dnt], {}, nested=False)
    assert (child, small.dave, "user", False) not in edges_of(list(rnd))
    assert set(rnd.delta_links) == {group_batch_stream([small.dnt])}


def test_more_than_50_groups_are_split_into_filters_of_at_most_50(
    client: GraphClient, emulator: EntraEmulator, small: SmallTenant
) -> None:
    groups = [small.tenant.add_group(f"g{n}") for n in range(120)]
    small.tenant.add_member(groups[-1], small.alice)
    rnd = client.read_groups(groups, {})
    edges = edges_of(list(rnd))
    assert edges == {(groups[-1], small.alice, "user", False)}
    assert len(rnd.delta_links) == 3
    for record in emulator.log.records(r"/groups/delta.*filter"):
        assert record.status == 200
        assert record.path.count("eq") <= 50


def test_delta_token_expired_between_rounds_means_resync(
    client: GraphClient, small: SmallTenant
) -> None:
    first = client.read_users({})
    list(first)
    small.tenant.expire_delta_tokens()
    small.tenant.delete_user(small.dave, permanent=True)
    second = client.read_users(first.delta_links)
    pages = list(second)
    assert second.resynced == {"users"}
    assert second.full_streams == {"users"}
    assert pages[0].resync and pages[0].full and pages[0].first
    # A full round: every live user, so the caller can diff (dave is simply absent).
    assert set(users_of(pages)) == {small.alice, small.bob, small.carol}


def test_410_in_the_middle_of_a_round_restarts_the_stream(
    client_for: Callable[..., GraphClient], emulator: EntraEmulator, small: SmallTenant
) -> None:
    for n in range(10):
        small.tenant.add_user(f"u{n}@contoso.com")
    client = client_for(page_size=4)
    emulator.faults.add(
        r"/users/delta.*\$skiptoken", status=410, code="syncStateNotFound", times=1, skip=1
    )
    rnd = client.read_users({})
    pages = list(rnd)
    restart = [i for i, p in enumerate(pages) if p.first]
    assert restart == [0, 2]  # two pages, then Graph forgot the state: start over
    assert all(p.resync for p in pages[2:]) and not pages[0].resync
    assert len(users_of(pages[2:])) == 14
    assert rnd.resynced == {"users"}
    assert emulator.log.count(status=410) == 1
    # The new link works for the next round.
    small.tenant.rename_upn(small.bob, "robert@contoso.com")
    nxt = list(client.read_users(rnd.delta_links))
    assert users_of(nxt) == {small.bob: "robert@contoso.com"}


def test_resync_required_code_on_groups(
    client: GraphClient, emulator: EntraEmulator, small: SmallTenant
) -> None:
    first = client.read_groups([small.dnt], {})
    list(first)
    emulator.faults.add(r"/groups/delta.*deltatoken", status=400, code="resyncRequired")
    second = client.read_groups([small.dnt], first.delta_links)
    pages = list(second)
    assert second.resynced == {group_batch_stream([small.dnt])}
    assert edges_of(pages) == {
        (small.dnt, small.alice, "user", False),
        (small.dnt, small.bob, "user", False),
    }


def test_get_group_name_and_count_or_none(client: GraphClient, small: SmallTenant) -> None:
    info = client.get_group(small.dnt)
    assert info is not None
    assert (info.display_name, info.member_count) == ("Do Not Track", 2)
    assert client.get_group("00000000-0000-0000-0000-000000000000") is None


def test_generated_tenant_round_trip() -> None:
    generated = generate_tenant(3000, dnt=40, delete=7, nested=5, seed=3)
    assert len(generated.tenant.users) == 3000
    dnt = generated.tenant.groups[generated.dnt_group]
    assert len(dnt.members) == 41  # 40 users and the nested group
    again = generate_tenant(3000, dnt=40, delete=7, nested=5, seed=3)
    assert again.user_ids == generated.user_ids  # seeded: reproducible


def test_effective_members_tolerates_cycles() -> None:
    edges = [
        MembershipEdge("a", "u1", "user"),
        MembershipEdge("a", "b", "group"),
        MembershipEdge("b", "u2", "user"),
        MembershipEdge("b", "a", "group"),
        MembershipEdge("c", "u3", "user"),
        MembershipEdge("b", "d1", "other"),
    ]
    assert effective_members(edges, ["a", "c"]) == {"a": {"u1", "u2"}, "c": {"u3"}}
    assert reachable_groups(edges, ["a"]) == {"a", "b"}
