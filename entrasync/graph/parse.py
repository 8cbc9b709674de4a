"""Graph JSON → domain values.

Delta pages are parsed here from the raw JSON body rather than from msgraph-sdk models:
Kiota's model deserialisation costs about 10 ms per user object (it rebuilds a dict of
several hundred field deserialisers for every object), i.e. more than 15 minutes for a
100k-user first round; json.loads plus this module takes well under a second. The SDK still
builds the requests, authenticates them and maps errors (see client.py).

Every id goes through `norm_id` (lower-case str): Kiota turns GUID-looking strings in
`additional_data` into `uuid.UUID`, and Graph may vary the case, so ids must compare equal
whichever way they arrived.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from entrasync.domain.entra import EntraUser, MemberKind, MembershipChange, UserRemoval

# Graph's name of each identity property -> EntraUser's field.
USER_PROPERTIES = {
    "userPrincipalName": "user_principal_name",
    "mail": "mail",
    "proxyAddresses": "proxy_addresses",
    "onPremisesUserPrincipalName": "on_premises_user_principal_name",
    "onPremisesSamAccountName": "on_premises_sam_account_name",
    "onPremisesDomainName": "on_premises_domain_name",
    "employeeId": "employee_id",
    "displayName": "display_name",
    "accountEnabled": "account_enabled",
}
ODATA_KINDS: dict[str, MemberKind] = {
    "#microsoft.graph.user": "user",
    "#microsoft.graph.group": "group",
}


def norm_id(value: Any) -> str:
    return str(value).strip().lower()


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def user_change(user: dict[str, Any]) -> EntraUser | UserRemoval:
    """One `users/delta` item: the user's current identity, or its removal. A property the
    item leaves out is not in `present` (unchanged); an explicit null is (cleared)."""
    removed = user.get("@removed")
    if removed is not None:
        reason = removed.get("reason") if isinstance(removed, dict) else None
        return UserRemoval(norm_id(user["id"]), permanent=reason == "deleted")
    return EntraUser(
        id=norm_id(user["id"]),
        user_principal_name=_text(user.get("userPrincipalName")),
        mail=_text(user.get("mail")),
        proxy_addresses=tuple(str(a) for a in (user.get("proxyAddresses") or ())),
        on_premises_user_principal_name=_text(user.get("onPremisesUserPrincipalName")),
        on_premises_sam_account_name=_text(user.get("onPremisesSamAccountName")),
        on_premises_domain_name=_text(user.get("onPremisesDomainName")),
        employee_id=_text(user.get("employeeId")),
        display_name=_text(user.get("displayName")),
        account_enabled=_flag(user.get("accountEnabled")),
        present=frozenset(field for name, field in USER_PROPERTIES.items() if name in user),
    )


class GroupItem(NamedTuple):
    """One `groups/delta` item: the group, whether Graph reported it removed from the
    directory, its display name when the item carries one (`$select=displayName,…`), and
    its direct membership changes (`members@delta`)."""

    group_id: str
    removed: bool
    name: str | None
    changes: list[MembershipChange]


def group_changes(group: dict[str, Any]) -> GroupItem:
    """Parse one `groups/delta` item (https://learn.microsoft.com/graph/api/group-delta)."""
    group_id = norm_id(group["id"])
    if group.get("@removed") is not None:
        return GroupItem(group_id, True, None, [])
    changes = []
    for member in group.get("members@delta") or ():
        if not isinstance(member, dict) or member.get("id") is None:
            continue
        kind = ODATA_KINDS.get(str(member.get("@odata.type", "")), "other")
        changes.append(
            MembershipChange(
                group_id=group_id,
                member_id=norm_id(member["id"]),
                member_kind=kind,
                removed="@removed" in member,
            )
        )
    return GroupItem(group_id, False, _text(group.get("displayName")), changes)
