"""Confirming with Graph before a purge: checkMemberGroups and user lookups sent as JSON
batches, against the emulator over HTTPS through the real client; and the directory
behaviour the confirmation relies on (soft-deleted groups and users, restores)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import requests
from graph_helpers import CLIENT_ID, SECRET, SmallTenant

from entrasync.domain.entra import GroupPage
from entrasync.errors import GraphPermissionDenied
from entrasync.graph import GraphClient, RetryPolicy
from entrasync.sim import EntraEmulator

UNKNOWN = "00000000-0000-4000-8000-000000000404"


@pytest.fixture
def http(emulator: EntraEmulator) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # the machine's REQUESTS_CA_BUNDLE would hide our CA
    session.verify = str(emulator.ca_file)
    token = session.post(
        f"{emulator.authority_host}/{emulator.tenant_id}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": CLIENT_ID,
            "client_secret": SECRET,
            "scope": f"{emulator.graph_url}/.default",
        },
        timeout=5,
    ).json()["access_token"]
    session.headers["Authorization"] = f"Bearer {token}"
    return session


def batch(
    http: requests.Session, emu: EntraEmulator, reqs: list[dict[str, object]]
) -> requests.Response:
    return http.post(f"{emu.graph_url}/v1.0/$batch", json={"requests": reqs}, timeout=5)


def check(user_id: str, group_ids: list[str], request_id: str = "1") -> dict[str, object]:
    return {
        "id": request_id,
        "method": "POST",
        "url": f"/users/{user_id}/checkMemberGroups",
        "headers": {"Content-Type": "application/json"},
        "body": {"groupIds": group_ids},
    }


# -- checkMemberGroups ------------------------------------------------------------------------


def test_check_member_groups_is_transitive_through_nested_groups(
    client: GraphClient, small: SmallTenant
) -> None:
    child = small.tenant.add_group("Delete - contractors")
    small.tenant.add_member(child, small.dave)
    small.tenant.add_member(small.delete, child)
    users = [small.alice, small.carol, small.dave, small.bob.upper()]
    result = client.check_member_groups(users, [small.delete, small.dnt.upper()])
    assert result == {
        small.alice: frozenset({small.dnt}),
        small.carol: frozenset({small.delete}),
        small.dave: frozenset({small.delete}),  # through the nested group
        small.bob: frozenset({small.dnt}),  # ids are normalised
    }


def test_deleted_users_are_in_no_group(client: GraphClient, small: SmallTenant) -> None:
    small.tenant.delete_user(small.carol)  # soft: 404 like a hard delete
    small.tenant.delete_user(small.bob, permanent=True)
    result = client.check_member_groups([small.carol, small.bob, UNKNOWN], [small.delete])
    assert result == {small.carol: frozenset(), small.bob: frozenset(), UNKNOWN: frozenset()}


def test_45_users_take_3_batches_and_more_than_20_groups_are_split(
    client: GraphClient, emulator: EntraEmulator, small: SmallTenant
) -> None:
    extra = [small.tenant.add_user(f"u{n}@contoso.com") for n in range(41)]
    small.tenant.add_members(small.delete, extra[:5])
    users = [small.alice, small.bob, small.carol, small.dave, *extra]
    result = client.check_member_groups(users, [small.delete])
    assert len(result) == 45
    assert {u for u, groups in result.items() if groups} == {small.carol, *extra[:5]}
    assert emulator.log.count(r"/\$batch") == 3
    assert emulator.batch_log.count(r"/checkMemberGroups$", status=200) == 45

    emulator.log.clear()
    emulator.batch_log.clear()
    groups = [small.tenant.add_group(f"g{n}") for n in range(24)]
    small.tenant.add_member(groups[-1], small.alice)
    assert client.check_member_groups([small.alice], [*groups, small.dnt]) == {
        small.alice: frozenset({groups[-1], small.dnt})
    }
    assert emulator.batch_log.count(r"/checkMemberGroups$") == 2  # 25 groups: 20 + 5
    assert emulator.log.count(r"/\$batch") == 1


def test_empty_inputs_send_nothing(client: GraphClient, emulator: EntraEmulator) -> None:
    assert client.check_member_groups([], ["g"]) == {}
    assert client.check_member_groups(["u"], []) == {"u": frozenset()}
    assert client.users_exist([]) == {}
    assert emulator.log.count(r"/v1\.0/") == 0


def test_missing_permission_is_denied_naming_both(
    client: GraphClient, emulator: EntraEmulator, small: SmallTenant
) -> None:
    emulator.register_app(CLIENT_ID, secret=SECRET, permissions={"User.Read.All"})
    with pytest.raises(GraphPermissionDenied) as caught:
        client.check_member_groups([small.alice], [small.delete])
    assert "User.Read.All and GroupMember.Read.All" in str(caught.value)
    assert client.users_exist([small.alice]) == {small.alice: True}  # needs User.Read.All only


# -- users_exist ------------------------------------------------------------------------------


def test_users_exist(client: GraphClient, small: SmallTenant) -> None:
    small.tenant.delete_user(small.bob)  # soft-deleted: Graph answers 404 like for a purge
    small.tenant.delete_user(small.carol, permanent=True)
    assert client.users_exist([small.alice, small.bob, small.carol, UNKNOWN]) == {
        small.alice: True,
        small.bob: False,
        small.carol: False,
        UNKNOWN: False,
    }


# -- throttling inside a batch ----------------------------------------------------------------


def test_throttled_sub_requests_are_retried_alone_after_retry_after(
    client: GraphClient, emulator: EntraEmulator, small: SmallTenant
) -> None:
    client.check_token()
    emulator.faults.add(
        rf"/users/{small.carol}/checkMemberGroups", status=429, retry_after="1", times=1
    )
    started = time.monotonic()
    result = client.check_member_groups([small.alice, small.carol], [small.delete])
    assert time.monotonic() - started >= 1.0
    assert result == {small.alice: frozenset(), small.carol: {small.delete}}
    assert emulator.log.count(r"/\$batch", status=200) == 2  # the batch itself succeeded
    assert [(r.path.split("/")[3], r.status) for r in emulator.batch_log.records()] == [
        (small.alice, 200),
        (small.carol, 429),
        (small.carol, 200),  # only the throttled one went again
    ]


def test_a_storm_leaves_the_throttled_users_unknown(
    client_for: Callable[..., GraphClient], emulator: EntraEmulator, small: SmallTenant
) -> None:
    client = client_for(retry=RetryPolicy(max_attempts=3, max_total=2.0, max_retry_after=1.0))
    emulator.faults.add(
        rf"/users/{small.carol}/checkMemberGroups", status=429, retry_after="0.2", times=None
    )
    emulator.faults.add(rf"/users/{small.bob}\?", status=503, times=None)
    result = client.check_member_groups([small.alice, small.carol], [small.delete])
    assert result == {small.alice: frozenset(), small.carol: None}
    assert emulator.batch_log.count(small.carol, status=429) == 3  # bounded by max_attempts
    exists = client.users_exist([small.alice, small.bob])
    assert exists == {small.alice: True, small.bob: None}


def test_html_gateway_pages(
    client: GraphClient, emulator: EntraEmulator, http: requests.Session, small: SmallTenant
) -> None:
    emulator.faults.add(r"/\$batch", status=502, html=True, times=1)
    response = batch(http, emulator, [check(small.carol, [small.delete])])
    assert response.status_code == 502
    assert response.headers["Content-Type"].startswith("text/html")
    # The client retries a gateway page on the batch, and a sub-request answered 502 with an
    # HTML body (base64 encoded inside the batch, as any non-JSON body) is retried too.
    emulator.faults.add(r"/\$batch", status=504, html=True, times=1)
    emulator.faults.add(rf"/users/{small.carol}/checkMemberGroups", html=True, times=1)
    assert client.check_member_groups([small.carol], [small.delete]) == {
        small.carol: frozenset({small.delete})
    }
    assert [r.status for r in emulator.batch_log.records(small.carol)] == [502, 200]
    assert [r.status for r in emulator.log.records(r"/\$batch")] == [502, 504, 200, 200]


# -- the emulator's batch contract ------------------------------------------------------------


def test_batch_responses_come_out_of_order_and_are_matched_by_id(
    emulator: EntraEmulator, http: requests.Session, small: SmallTenant
) -> None:
    users = [small.alice, small.bob, small.carol, small.dave, UNKNOWN]
    reqs: list[dict[str, object]] = [
        {"id": f"r{n}", "method": "GET", "url": f"/users/{u}?$select=id"}
        for n, u in enumerate(users)
    ]
    response = batch(http, emulator, reqs)
    assert response.status_code == 200
    answers = response.json()["responses"]
    assert [a["id"] for a in answers] != [r["id"] for r in reqs]
    status = {a["id"]: a["status"] for a in answers}
    assert status == {"r0": 200, "r1": 200, "r2": 200, "r3": 200, "r4": 404}
    body = next(a["body"] for a in answers if a["id"] == "r4")
    assert body["error"]["code"] == "Request_ResourceNotFound"


def test_batch_seed_makes_the_order_reproducible(small: SmallTenant) -> None:
    def order(seed: int) -> list[str]:
        with EntraEmulator(small.tenant, batch_seed=seed) as emu:
            emu.register_app(CLIENT_ID, secret=SECRET)
            session = requests.Session()
            session.trust_env = False
            session.verify = str(emu.ca_file)
            token = session.post(
                f"{emu.authority_host}/{emu.tenant_id}/oauth2/v2.0/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": CLIENT_ID,
                    "client_secret": SECRET,
                    "scope": f"{emu.graph_url}/.default",
                },
                timeout=5,
            ).json()["access_token"]
            session.headers["Authorization"] = f"Bearer {token}"
            reqs: list[dict[str, object]] = [
                {"id": str(n), "method": "GET", "url": "/users?$top=1"} for n in range(8)
            ]
            answers = batch(session, emu, reqs).json()["responses"]
            return [a["id"] for a in answers]

    assert order(7) == order(7)
    assert order(7) != [str(n) for n in range(8)]


def test_batch_limits_and_malformed_batches_are_rejected(
    emulator: EntraEmulator, http: requests.Session, small: SmallTenant
) -> None:
    reqs = [check(small.alice, [small.dnt], str(n)) for n in range(21)]
    too_many = batch(http, emulator, reqs)
    assert too_many.status_code == 400
    assert batch(http, emulator, reqs[:20]).status_code == 200
    duplicate = batch(http, emulator, [check(small.alice, [], "a"), check(small.bob, [], "A")])
    assert duplicate.status_code == 400
    no_type = {**check(small.alice, []), "headers": {}}
    assert batch(http, emulator, [no_type]).status_code == 400
    del http.headers["Authorization"]
    assert batch(http, emulator, reqs[:1]).status_code == 401


def test_check_member_groups_endpoint(
    emulator: EntraEmulator, http: requests.Session, small: SmallTenant
) -> None:
    base = f"{emulator.graph_url}/v1.0/users"
    for name in ("checkMemberGroups", "microsoft.graph.checkMemberGroups"):
        response = http.post(
            f"{base}/{small.alice}/{name}",
            json={"groupIds": [small.dnt, small.delete, UNKNOWN]},
            timeout=5,
        )
        assert response.status_code == 200
        assert response.json()["value"] == [small.dnt]
    by_upn = http.post(
        f"{base}/alice@contoso.com/checkMemberGroups", json={"groupIds": [small.dnt]}, timeout=5
    )
    assert by_upn.json()["value"] == [small.dnt]
    too_many = http.post(
        f"{base}/{small.alice}/checkMemberGroups", json={"groupIds": [UNKNOWN] * 21}, timeout=5
    )
    assert too_many.status_code == 400
    missing = http.post(f"{base}/{UNKNOWN}/checkMemberGroups", json={"groupIds": []}, timeout=5)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "Request_ResourceNotFound"
    assert http.get(f"{base}/{small.alice}/checkMemberGroups", timeout=5).status_code == 405
    emulator.register_app(CLIENT_ID, secret=SECRET, permissions={"User.Read.All"})
    denied = http.post(
        f"{base}/{small.alice}/checkMemberGroups", json={"groupIds": [small.dnt]}, timeout=5
    )
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "Authorization_RequestDenied"


# -- soft-deleted groups and users in delta rounds --------------------------------------------


def edges(pages: list[GroupPage]) -> set[tuple[str, str, bool]]:
    return {(c.group_id, c.member_id, c.removed) for p in pages for c in p.changes}


def test_group_soft_delete_and_restore_in_increments(
    client: GraphClient, emulator: EntraEmulator, http: requests.Session, small: SmallTenant
) -> None:
    watched = [small.dnt, small.delete]
    first = client.read_groups(watched, {})
    list(first)
    small.tenant.delete_group(small.dnt)
    second = client.read_groups(watched, first.delta_links)
    pages = list(second)
    assert [g for p in pages for g in p.deleted_groups] == [small.dnt]
    assert edges(pages) == set()  # members are kept in the recycle bin, not removed
    link = next(iter(first.delta_links.values()))
    raw = http.get(link, timeout=5).json()["value"]
    assert raw == [{"id": small.dnt, "@removed": {"reason": "changed"}}]  # restorable

    fresh = list(client.read_groups(watched, {}))  # a full round: no item for it at all
    assert {g for p in fresh for g in p.seen_groups} == {small.delete}
    assert not any(p.deleted_groups for p in fresh)

    small.tenant.delete_user(small.alice)  # leaves the deleted group too
    small.tenant.restore_group(small.dnt)
    third = client.read_groups(watched, second.delta_links)
    pages = list(third)
    assert edges(pages) == {
        (small.dnt, small.bob, False),  # every current member, again
        (small.dnt, small.alice, True),  # and who left it meanwhile
    }
    assert {g for p in pages for g in p.seen_groups} == {small.dnt}
    assert {n for p in pages for n in p.names} == {(small.dnt, "Do Not Track")}
    assert client.check_member_groups([small.bob], watched) == {small.bob: frozenset({small.dnt})}


def test_display_names_and_seen_groups_on_group_pages(
    client: GraphClient, emulator: EntraEmulator, small: SmallTenant
) -> None:
    empty = small.tenant.add_group("Nobody yet")
    watched = [small.dnt, small.delete, empty, UNKNOWN]
    first = client.read_groups(watched, {})
    pages = list(first)
    assert {g for p in pages for g in p.seen_groups} == {small.dnt, small.delete, empty}
    assert dict(n for p in pages for n in p.names) == {
        small.dnt: "Do Not Track",
        small.delete: "Delete",
        empty: "Nobody yet",
    }
    assert emulator.log.count(r"groups/delta.*select=displayName(,|%2C)members") == 1

    small.tenant.rename_group(small.delete, "Delete (GDPR)")
    small.tenant.add_member(small.dnt, small.dave)
    second = client.read_groups(watched, first.delta_links)
    pages = list(second)
    assert dict(n for p in pages for n in p.names) == {
        small.delete: "Delete (GDPR)",
        small.dnt: "Do Not Track",
    }
    assert edges(pages) == {(small.dnt, small.dave, False)}
    assert {g for p in pages for g in p.seen_groups} == {small.dnt, small.delete}


def test_restored_user_gets_its_memberships_back(client: GraphClient, small: SmallTenant) -> None:
    first = client.read_groups([small.dnt], {})
    list(first)
    small.tenant.delete_user(small.alice)
    second = client.read_groups([small.dnt], first.delta_links)
    assert edges(list(second)) == {(small.dnt, small.alice, True)}
    small.tenant.restore_user(small.alice)
    third = client.read_groups([small.dnt], second.delta_links)
    assert edges(list(third)) == {(small.dnt, small.alice, False)}
    assert client.check_member_groups([small.alice], [small.dnt]) == {
        small.alice: frozenset({small.dnt})
    }


def test_restores_can_be_left_out_of_user_increments(
    client: GraphClient, small: SmallTenant
) -> None:
    small.tenant.report_restores = False
    first = client.read_users({})
    list(first)
    small.tenant.delete_user(small.bob)
    second = client.read_users(first.delta_links)
    assert [(r.id, r.permanent) for p in second for r in p.removals] == [(small.bob, False)]
    small.tenant.restore_user(small.bob)
    small.tenant.rename_upn(small.alice, "alice@newco.com")
    third = client.read_users(second.delta_links)
    pages = list(third)
    assert [u.id for p in pages for u in p.users] == [small.alice]  # bob's restore is omitted
    assert client.users_exist([small.bob]) == {small.bob: True}  # GET /users/{id}: 200
    full = {u.id for p in client.read_users({}) for u in p.users}
    assert small.bob in full

    small.tenant.report_restores = True
    small.tenant.delete_user(small.bob)
    small.tenant.restore_user(small.bob)
    fourth = client.read_users(third.delta_links)
    assert [u.id for p in fourth for u in p.users] == [small.bob]
