"""`GraphClient.get_user` (`sync --user`): one user read directly, by object id or UPN, as
user-get.md documents it, against the emulator over HTTPS."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from graph_helpers import SmallTenant

from entrasync.errors import GraphPermissionDenied, GraphUnavailable
from entrasync.graph import ClientSecret, GraphClient
from entrasync.graph._user import user_path
from entrasync.sim import EntraEmulator


def test_by_id_and_by_upn_the_user_a_delta_round_would_give(
    client: GraphClient, small: SmallTenant, emulator: EntraEmulator
) -> None:
    by_id = client.get_user(small.alice)
    by_upn = client.get_user("ALICE@contoso.com")  # Graph compares UPNs case-insensitively
    assert by_id is not None and by_id == by_upn
    assert by_id.id == small.alice and by_id.complete
    assert by_id.employee_id == "E1" and by_id.on_premises_sam_account_name == "alice"
    assert by_id.account_enabled is True
    (request,) = [
        r for r in emulator.log.records() if r.path.startswith(f"/v1.0/users/{small.alice}")
    ]
    assert "%24select=id%2C" in request.path or "$select=id," in request.path


def test_a_missing_or_deleted_user_is_none(client: GraphClient, small: SmallTenant) -> None:
    assert client.get_user("nobody@contoso.com") is None
    small.tenant.delete_user(small.bob)  # soft-deleted: the recycle bin answers 404 too
    assert client.get_user(small.bob) is None
    small.tenant.restore_user(small.bob)
    restored = client.get_user(small.bob)
    assert restored is not None and restored.user_principal_name == "bob@contoso.com"


def test_addressing_rough_edges(client: GraphClient, small: SmallTenant) -> None:
    """A UPN starting with `$` must be quoted (the plain form is a 400), a guest's `#EXT#`
    encoded, an apostrophe doubled inside quotes (user-get.md, "HTTP request")."""
    dollar = small.tenant.add_user("$admin@contoso.com")
    guest = small.tenant.add_user("ann_fabrikam.com#EXT#@contoso.com")
    irish = small.tenant.add_user("$o'brien@contoso.com")
    assert user_path("$admin@contoso.com") == "/users('$admin@contoso.com')"
    assert user_path("ann#EXT#@x.com") == "/users/ann%23EXT%23@x.com"
    for upn, object_id in [
        ("$admin@contoso.com", dollar),
        ("ann_fabrikam.com#EXT#@contoso.com", guest),
        ("$o'brien@contoso.com", irish),
    ]:
        found = client.get_user(upn)
        assert found is not None and found.id == object_id, upn


def test_outage_and_missing_permission_are_named(
    emulator: EntraEmulator, small: SmallTenant, client_for: Callable[..., GraphClient]
) -> None:
    emulator.faults.add(r"^/v1\.0/users/", status=503, retry_after=0, times=None)
    with pytest.raises(GraphUnavailable, match="503"):
        client_for().get_user(small.alice)
    emulator.faults.clear()
    emulator.register_app("limited", secret="s", permissions={"GroupMember.Read.All"})
    limited = client_for(client_id="limited", credential=ClientSecret("s", "test"))
    with pytest.raises(GraphPermissionDenied, match=r"User\.Read\.All"):
        limited.get_user(small.alice)
