"""The emulator's own contract, for the endpoints the adapter does not exercise."""

from __future__ import annotations

import pytest
import requests
from graph_helpers import CLIENT_ID, SECRET, SmallTenant

from entrasync.sim import EntraEmulator


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


def test_bearer_token_is_required(emulator: EntraEmulator, http: requests.Session) -> None:
    del http.headers["Authorization"]
    response = http.get(f"{emulator.graph_url}/v1.0/users/delta", timeout=5)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "InvalidAuthenticationToken"


def test_transitive_members_with_casts_and_count(
    emulator: EntraEmulator, http: requests.Session, small: SmallTenant
) -> None:
    child = small.tenant.add_group("child")
    small.tenant.add_member(child, small.dave)
    small.tenant.add_member(child, small.dnt)  # cycle
    small.tenant.add_member(small.dnt, child)
    base = f"{emulator.graph_url}/v1.0/groups/{small.dnt}"
    direct = http.get(f"{base}/members", timeout=5).json()["value"]
    assert {m["id"] for m in direct} == {small.alice, small.bob, child}
    for cast in ("microsoft.graph.user", "graph.user"):
        users = http.get(f"{base}/transitiveMembers/{cast}", timeout=5).json()["value"]
        assert {u["id"] for u in users} == {small.alice, small.bob, small.dave}
    counted = http.get(
        f"{base}/transitiveMembers/microsoft.graph.user/$count",
        headers={"ConsistencyLevel": "eventual"},
        timeout=5,
    )
    assert counted.text == "3"
    assert http.get(f"{base}/members/$count", timeout=5).status_code == 400  # no header


def test_paging_of_members_and_top_bounds(
    emulator: EntraEmulator, http: requests.Session, small: SmallTenant
) -> None:
    url = f"{emulator.graph_url}/v1.0/groups/{small.dnt}/members?$top=1"
    seen = []
    while url:
        page = http.get(url, timeout=5).json()
        seen += [m["id"] for m in page["value"]]
        url = page.get("@odata.nextLink")
    assert sorted(seen) == sorted([small.alice, small.bob])
    too_big = http.get(f"{emulator.graph_url}/v1.0/users/delta?$top=1000", timeout=5)
    assert too_big.status_code == 400


def test_filter_limit_and_user_lookup(
    emulator: EntraEmulator, http: requests.Session, small: SmallTenant
) -> None:
    ids = " or ".join(f"id eq '{n}'" for n in range(51))
    response = http.get(f"{emulator.graph_url}/v1.0/groups/delta()?$filter={ids}", timeout=5)
    assert response.status_code == 400
    user = http.get(
        f"{emulator.graph_url}/v1.0/users/{small.alice}?$select=userPrincipalName", timeout=5
    ).json()
    assert user["userPrincipalName"] == "alice@contoso.com"
    assert "mail" not in user
    small.tenant.delete_user(small.alice)
    gone = http.get(f"{emulator.graph_url}/v1.0/users/{small.alice}", timeout=5)
    assert gone.status_code == 404


def test_rename_keeps_the_old_address_as_a_secondary_proxy(small: SmallTenant) -> None:
    small.tenant.rename_upn(small.alice, "alice@newco.com")
    user = small.tenant.users[small.alice]
    assert user.proxy_addresses == ["SMTP:alice@newco.com", "smtp:alice@contoso.com"]
    small.tenant.rename_upn(small.alice, "alice@contoso.com")  # and back again
    assert user.proxy_addresses == ["SMTP:alice@contoso.com", "smtp:alice@newco.com"]
