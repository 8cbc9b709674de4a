"""The directory objects of the emulated tenant (users, groups) and its history events."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

MemberKind = Literal["user", "group"]

USER_PROPERTIES = {
    "id": "id",
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
GRAPH_NAME = {attr: name for name, attr in USER_PROPERTIES.items()}
ODATA_TYPE = {"user": "#microsoft.graph.user", "group": "#microsoft.graph.group"}


@dataclass
class SimUser:
    id: str
    user_principal_name: str
    display_name: str | None = None
    mail: str | None = None
    proxy_addresses: list[str] = field(default_factory=list)
    employee_id: str | None = None
    on_premises_user_principal_name: str | None = None
    on_premises_sam_account_name: str | None = None
    on_premises_domain_name: str | None = None
    account_enabled: bool = True
    soft_deleted: bool = False

    def to_json(self, select: list[str] | None) -> dict[str, Any]:
        names = select or list(USER_PROPERTIES)
        out: dict[str, Any] = {"@odata.type": "#microsoft.graph.user", "id": self.id}
        for name in names:
            attr = USER_PROPERTIES.get(name)
            if attr:
                value = getattr(self, attr)
                out[name] = list(value) if isinstance(value, list) else value
        return out


@dataclass
class SimGroup:
    id: str
    display_name: str
    members: dict[str, MemberKind] = field(default_factory=dict)
    version: int = 0  # bumped on membership change; keys the sorted-members cache


# History events: ("u", user_id[, "delete" | "restore"]) | ("g", group_id[, "rename" |
# "delete" | "restore"]) | ("m", group_id, member_id, kind, added). A 2-tuple is a creation
# or an update (generate.py appends those directly).
Event = tuple[Any, ...]


def event_kind(event: Event) -> str:
    """What a "u" or "g" event did: "update" (creation included), "rename", "delete",
    "restore"."""
    return str(event[2]) if len(event) == 3 else "update"


class SyncStateExpired(Exception):
    """A delta or skip token from before `expire_delta_tokens()`."""
