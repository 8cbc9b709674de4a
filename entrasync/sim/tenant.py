"""An in-memory Entra tenant with a change history, and the delta-query logic over it.

Design: every mutation appends an event to `history`; a delta token encodes a position in
that history (plus the query it belongs to), so the next round returns exactly the changes
made since, in Microsoft's documented shapes
(https://learn.microsoft.com/graph/delta-query-overview, "Resource representation in the
delta query response"; https://learn.microsoft.com/graph/api/group-delta):

* users: the changed user with its selected properties, or `{"id", "@removed": {"reason":
  "changed"}}` for a soft delete and `"deleted"` for a hard delete (`changed` means "can be
  restored from deletedItems", `deleted` "cannot be restored");
* groups (`$select=displayName,members`): the group with `displayName` (when selected) and
  `members@delta` listing added members and removed ones carrying `"@removed": {"reason":
  "deleted"}`; a deleted group itself carries `@removed` with the same reasons as users (a
  soft-deleted group sits in the recycle bin and can be restored; a permanently deleted one,
  like a security group, cannot). A pair added and removed again inside one window is not
  reported (net change).

Soft delete and restore follow Entra
(https://learn.microsoft.com/graph/api/directory-deleteditems-restore): a deleted user or
group stays restorable for 30 days; a soft-deleted user leaves its groups and gets those
memberships back when restored; a soft-deleted group keeps its own members and comes back
with them (a restored group is reported in an increment with every current member as an
addition, since the client dropped them with the group).

Full rounds page through a sorted snapshot by id (cursor = last id), so paging is stable
while the tenant changes; changes during a round show up again in the next increment, which
is the at-least-once behaviour Graph documents. `expire_delta_tokens()` bumps an epoch that
every token carries; older tokens then fail with `syncStateNotFound` (HTTP 410).

All methods take the tenant lock: tests mutate the tenant while the server thread reads it.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

from entrasync.sim._objects import (
    GRAPH_NAME,
    ODATA_TYPE,
    USER_PROPERTIES,
    Event,
    MemberKind,
    SimGroup,
    SimUser,
    SyncStateExpired,
)
from entrasync.sim._tenant_delta import DeltaQueries

__all__ = [
    "GRAPH_NAME",
    "ODATA_TYPE",
    "USER_PROPERTIES",
    "Event",
    "MemberKind",
    "SimGroup",
    "SimUser",
    "SyncStateExpired",
    "Tenant",
]


class Tenant(DeltaQueries):
    """Users, groups, nesting and the change history. Build and mutate it from tests."""

    def __init__(self, tenant_id: str | None = None) -> None:
        self.tenant_id = tenant_id or str(uuid.uuid4())
        self.lock = threading.RLock()
        self.users: dict[str, SimUser] = {}
        self.groups: dict[str, SimGroup] = {}  # live groups only
        self.deleted_groups: dict[str, SimGroup] = {}  # the recycle bin, members kept
        self.history: list[Event] = []
        self.epoch = 0
        # Graph may leave restored users out of `$select` increments (DESIGN.md: periodic full
        # reads heal it); False emulates that. Full rounds and GET /users/{id} are unaffected.
        self.report_restores = True
        # Soft-deleted users and groups: the groups they were direct members of, given back
        # on restore as Entra does.
        self._recycled_memberships: dict[str, list[str]] = {}
        self._user_order: list[str] | None = None
        self._member_order: dict[str, tuple[int, list[str]]] = {}
        # history index of a user update -> the Graph properties it changed (for partial
        # delta items); an update without an entry changed everything (a creation).
        self._changed: dict[int, frozenset[str]] = {}

    # -- building and mutating ------------------------------------------------------------

    def add_user(
        self,
        upn: str,
        *,
        id: str | None = None,  # noqa: A002 - Graph's name for it
        display_name: str | None = None,
        mail: str | None = None,
        proxy_addresses: list[str] | None = None,
        employee_id: str | None = None,
        on_premises_user_principal_name: str | None = None,
        on_premises_sam_account_name: str | None = None,
        on_premises_domain_name: str | None = None,
    ) -> str:
        with self.lock:
            user = SimUser(
                id=id or str(uuid.uuid4()),
                user_principal_name=upn,
                display_name=display_name or upn.split("@")[0],
                mail=mail if mail is not None else upn,
                proxy_addresses=(
                    proxy_addresses if proxy_addresses is not None else [f"SMTP:{upn}"]
                ),
                employee_id=employee_id,
                on_premises_user_principal_name=on_premises_user_principal_name,
                on_premises_sam_account_name=on_premises_sam_account_name,
                on_premises_domain_name=on_premises_domain_name,
            )
            self.users[user.id] = user
            self._user_order = None
            self.history.append(("u", user.id))
            return user.id

    def update_user(self, user_id: str, **changes: Any) -> None:
        with self.lock:
            user = self.users[user_id]
            for name, value in changes.items():
                if not hasattr(user, name) or name in ("id", "soft_deleted"):
                    raise AttributeError(f"SimUser has no settable attribute {name!r}")
                setattr(user, name, value)
            self._record_update(user_id, {GRAPH_NAME[name] for name in changes})

    def set_account_enabled(self, user_id: str, enabled: bool) -> None:
        """Block or allow sign-in (`accountEnabled`), as an admin does for a leaver before
        deleting the account; users/delta reports the user as changed."""
        self.update_user(user_id, account_enabled=enabled)

    def rename_upn(self, user_id: str, new_upn: str, *, update_mail: bool = True) -> None:
        """Change the UPN. With `update_mail`, do what Exchange Online does when the primary
        address follows the UPN: the new address becomes primary (`SMTP:`), the old one
        stays as a secondary (`smtp:`) proxy address, and `mail` follows."""
        with self.lock:
            user = self.users[user_id]
            old = user.user_principal_name
            user.user_principal_name = new_upn
            if update_mail:
                kept = [
                    f"smtp:{a[5:]}" if a.startswith("SMTP:") else a
                    for a in user.proxy_addresses
                    if a.lower() != f"smtp:{new_upn.lower()}"
                ]
                if f"smtp:{old.lower()}" not in (a.lower() for a in kept):
                    kept.append(f"smtp:{old}")
                user.proxy_addresses = [f"SMTP:{new_upn}", *kept]
                user.mail = new_upn
            changed = {"userPrincipalName"}
            if update_mail:
                changed |= {"proxyAddresses", "mail"}
            self._record_update(user_id, changed)

    def _record_update(self, user_id: str, graph_names: set[str]) -> None:
        self._changed[len(self.history)] = frozenset(graph_names)
        self.history.append(("u", user_id))

    def delete_user(self, user_id: str, *, permanent: bool = False) -> None:
        """Soft delete (recycle bin; delta reason `changed`) or hard delete (`deleted`).
        Either way the user leaves every group, as in Entra; a soft-deleted user's
        memberships come back with `restore_user`."""
        with self.lock:
            left = self._leave_groups(user_id, "user")
            if permanent:
                del self.users[user_id]
                self._recycled_memberships.pop(user_id, None)
            else:
                self.users[user_id].soft_deleted = True
                self._recycled_memberships[user_id] = left
            self._user_order = None
            self.history.append(("u", user_id, "delete"))

    def restore_user(self, user_id: str) -> None:
        """Bring a soft-deleted user back, with the group memberships it had (Entra restores
        them; each shows up as an addition in groups/delta)."""
        with self.lock:
            user = self.users[user_id]
            if not user.soft_deleted:
                return
            user.soft_deleted = False
            self._user_order = None
            self.history.append(("u", user_id, "restore"))
            self._rejoin(user_id, "user", self._recycled_memberships.pop(user_id, []))

    def add_group(self, display_name: str, *, id: str | None = None) -> str:  # noqa: A002
        with self.lock:
            group = SimGroup(id=id or str(uuid.uuid4()), display_name=display_name)
            self.groups[group.id] = group
            self.history.append(("g", group.id))
            return group.id

    def rename_group(self, group_id: str, name: str) -> None:
        with self.lock:
            self.groups[group_id].display_name = name
            self.history.append(("g", group_id, "rename"))

    def delete_group(self, group_id: str, *, permanent: bool = False) -> None:
        """Soft delete (recycle bin, members kept; delta reason `changed`) or permanent
        delete (`deleted`; also purges a group already in the recycle bin). The group leaves
        the groups it was nested in."""
        with self.lock:
            if not permanent and group_id in self.deleted_groups:
                return
            group = self.groups.pop(group_id, None) or self.deleted_groups.pop(group_id)
            left = self._leave_groups(group_id, "group")
            if permanent:
                self._recycled_memberships.pop(group_id, None)
            else:
                self.deleted_groups[group_id] = group
                self._recycled_memberships[group_id] = left
            self.history.append(("g", group_id, "delete"))

    def restore_group(self, group_id: str) -> None:
        """Bring a soft-deleted group back with its members and its place in parent groups."""
        with self.lock:
            self.groups[group_id] = self.deleted_groups.pop(group_id)
            self.history.append(("g", group_id, "restore"))
            self._rejoin(group_id, "group", self._recycled_memberships.pop(group_id, []))

    def _leave_groups(self, member_id: str, kind: MemberKind) -> list[str]:
        left = []
        for group in [*self.groups.values(), *self.deleted_groups.values()]:
            if member_id in group.members:
                self._set_member(group, member_id, kind, added=False)
                left.append(group.id)
        return left

    def _rejoin(self, member_id: str, kind: MemberKind, group_ids: list[str]) -> None:
        for group_id in group_ids:  # a group purged meanwhile is gone for good
            group = self.groups.get(group_id) or self.deleted_groups.get(group_id)
            if group is not None:
                self._set_member(group, member_id, kind, added=True)

    def add_member(self, group_id: str, member_id: str) -> None:
        """Add a user or a group (nesting) as a direct member."""
        with self.lock:
            kind: MemberKind = "group" if member_id in self.groups else "user"
            if kind == "user" and member_id not in self.users:
                raise KeyError(f"no user or group {member_id}")
            self._set_member(self.groups[group_id], member_id, kind, added=True)

    def remove_member(self, group_id: str, member_id: str) -> None:
        with self.lock:
            group = self.groups[group_id]
            self._set_member(group, member_id, group.members[member_id], added=False)

    def add_members(self, group_id: str, member_ids: list[str]) -> None:
        with self.lock:
            for member_id in member_ids:
                self.add_member(group_id, member_id)

    def _set_member(self, group: SimGroup, member_id: str, kind: MemberKind, added: bool) -> None:
        if added:
            if member_id in group.members:
                return
            group.members[member_id] = kind
        else:
            group.members.pop(member_id, None)
        group.version += 1
        self.history.append(("m", group.id, member_id, kind, added))

    def expire_delta_tokens(self) -> None:
        """Every delta and skip token issued so far now fails with syncStateNotFound."""
        with self.lock:
            self.epoch += 1

    @property
    def seq(self) -> int:
        return len(self.history)

    # -- reads used by the server -----------------------------------------------------------

    def live_user(self, key: str) -> SimUser | None:
        """The user by id or userPrincipalName (Graph accepts either), unless deleted."""
        with self.lock:
            user = self.users.get(key) or self.users.get(key.lower())
            if user is None and "@" in key:
                upn = key.lower()
                found = (u for u in self.users.values() if u.user_principal_name.lower() == upn)
                user = next(found, None)
            return None if user is None or user.soft_deleted else user

    def member_of(self, member_id: str) -> set[str]:
        """Every live group the object is a direct or transitive member of (cycle-safe).
        Walks upwards: a user is in few groups, while a watched group may hold 100k users."""
        with self.lock:
            found: set[str] = set()
            pending = [member_id]
            while pending:
                current = pending.pop()
                for group in self.groups.values():
                    if current in group.members and group.id not in found:
                        found.add(group.id)
                        pending.append(group.id)
            return found

    def transitive_members(self, group_id: str) -> list[tuple[str, MemberKind]]:
        """Users and groups below a group, each once (cycle-safe), in a stable order."""
        with self.lock:
            seen: dict[str, MemberKind] = {}
            pending = [group_id]
            visited = {group_id}
            while pending:
                group = self.groups.get(pending.pop())
                if group is None:
                    continue
                for member_id, kind in group.members.items():
                    if member_id not in seen and member_id != group_id:
                        seen[member_id] = kind
                    if kind == "group" and member_id not in visited:
                        visited.add(member_id)
                        pending.append(member_id)
            return sorted(seen.items())
