"""A `users/delta` item may leave out properties that did not change (EntraUser.present)."""

from __future__ import annotations

from entrasync.domain.entra import USER_FIELDS, EntraUser
from entrasync.graph.parse import user_change

STORED = EntraUser(
    id="u1",
    user_principal_name="alice@contoso.com",
    mail="alice@contoso.com",
    proxy_addresses=("SMTP:alice@contoso.com",),
    on_premises_sam_account_name="alice",
    on_premises_domain_name="CONTOSO",
    employee_id="E1",
    display_name="Alice",
)


def test_parse_records_which_properties_the_item_carried() -> None:
    item = user_change({"id": "U1", "displayName": "Alice B", "employeeId": None})
    assert isinstance(item, EntraUser)
    assert item.present == {"display_name", "employee_id"}
    assert not item.complete
    full = user_change({"id": "u1", **dict.fromkeys(_GRAPH_NAMES)})
    assert isinstance(full, EntraUser) and full.complete


def test_absent_properties_keep_the_stored_value_and_null_clears() -> None:
    item = user_change({"id": "u1", "displayName": "Alice B", "employeeId": None})
    assert isinstance(item, EntraUser)
    merged = item.merged_with(STORED)
    assert merged.complete and merged.present == USER_FIELDS
    assert merged.display_name == "Alice B"
    assert merged.employee_id is None
    assert merged.mail == "alice@contoso.com"
    assert merged.proxy_addresses == ("SMTP:alice@contoso.com",)
    assert merged.on_premises_sam_account_name == "alice"


def test_a_partial_item_for_an_unknown_user_leaves_the_rest_empty() -> None:
    item = user_change({"id": "u2", "userPrincipalName": "bob@contoso.com"})
    assert isinstance(item, EntraUser)
    merged = item.merged_with(None)
    assert merged.user_principal_name == "bob@contoso.com"
    assert merged.mail is None and merged.proxy_addresses == ()


def test_a_complete_item_ignores_what_is_stored() -> None:
    item = EntraUser(id="u1", display_name="New")
    assert item.merged_with(STORED) is item


_GRAPH_NAMES = (
    "userPrincipalName",
    "mail",
    "proxyAddresses",
    "onPremisesUserPrincipalName",
    "onPremisesSamAccountName",
    "onPremisesDomainName",
    "employeeId",
    "displayName",
    "accountEnabled",
)
