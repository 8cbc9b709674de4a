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

import bisect
import random
import threading
import uuid
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


def _event_kind(event: Event) -> str:
    """What a "u" or "g" event did: "update" (creation included), "rename", "delete",
    "restore"."""
    return str(event[2]) if len(event) == 3 else "update"


class SyncStateExpired(Exception):
    """A delta or skip token from before `expire_delta_tokens()`."""


class Tenant:
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

    def _sorted_users(self) -> list[str]:
        if self._user_order is None:
            self._user_order = sorted(u.id for u in self.users.values() if not u.soft_deleted)
        return self._user_order

    def _sorted_members(self, group: SimGroup) -> list[str]:
        cached = self._member_order.get(group.id)
        if cached is None or cached[0] != group.version:
            cached = (group.version, sorted(group.members))
            self._member_order[group.id] = cached
        return cached[1]

    def _check_epoch(self, state: dict[str, Any]) -> None:
        if state.get("e", 0) != self.epoch:
            raise SyncStateExpired

    def check_state(self, state: dict[str, Any]) -> None:
        """Raise SyncStateExpired for a token from before `expire_delta_tokens()`."""
        with self.lock:
            self._check_epoch(state)

    def changed_properties(self, frm: int, to: int) -> dict[str, frozenset[str] | None]:
        """Per user updated in history[frm:to], the Graph properties that changed; None when
        the user was created or restored there (every property is news)."""
        out: dict[str, frozenset[str] | None] = {}
        with self.lock:
            for index in range(frm, to):
                event = self.history[index]
                kind = _event_kind(event) if event[0] == "u" else None
                if kind not in ("update", "restore"):
                    continue
                props = self._changed.get(index) if kind == "update" else None
                before = out.get(event[1], frozenset())
                out[event[1]] = None if props is None or before is None else before | props
        return out

    def vanished_since(self, state: dict[str, Any]) -> str | None:
        """An object of a delta round deleted after the round started (history[to:]): for
        users any user, for groups a group of the filter. None when nothing vanished."""
        wanted = set(state.get("ids") or ()) if state.get("r") == "groups" else None
        kind = "g" if state.get("r") == "groups" else "u"
        with self.lock:
            for event in self.history[int(state.get("to") or 0) :]:
                if event[0] != kind or _event_kind(event) != "delete":
                    continue
                if wanted is None or event[1] in wanted:
                    return str(event[1])
        return None

    # -- users/delta ------------------------------------------------------------------------

    def users_delta(self, state: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """One page. `state` holds: e (epoch), frm (start seq or None = full round), to (end
        seq of this round), sel (select), n (page size), c (cursor). Returns the items and
        either a next state (`next` key) or the delta state (`delta` key)."""
        with self.lock:
            self._check_epoch(state)
            size = int(state["n"])
            select = state.get("sel")
            if state.get("frm") is None:
                order = self._sorted_users()
                start = bisect.bisect_right(order, state["c"]) if state.get("c") else 0
                ids = order[start : start + size]
                items = [self.users[i].to_json(select) for i in ids]
                more = start + size < len(order)
                cursor: Any = ids[-1] if ids else None
            else:
                changed = self._changed_users(state["frm"], state["to"])
                start = int(state.get("c") or 0)
                items = [self._user_change(i, select) for i in changed[start : start + size]]
                more = start + size < len(changed)
                cursor = start + size
            return items, self._continue(state, more, cursor)

    def _changed_users(self, frm: int, to: int) -> list[str]:
        kinds: dict[str, set[str]] = {}
        for event in self.history[frm:to]:
            if event[0] == "u":
                kinds.setdefault(event[1], set()).add(_event_kind(event))
        return sorted(u for u, seen in kinds.items() if not self._restore_hidden(u, seen))

    def _restore_hidden(self, user_id: str, kinds: set[str]) -> bool:
        """With `report_restores` off, a user whose only news is being back from the recycle
        bin is left out of the increment, as Graph may do for `$select` rounds."""
        if self.report_restores or "restore" not in kinds or not kinds <= {"delete", "restore"}:
            return False
        user = self.users.get(user_id)
        return user is not None and not user.soft_deleted

    def _user_change(self, user_id: str, select: list[str] | None) -> dict[str, Any]:
        user = self.users.get(user_id)
        if user is None:
            return {"id": user_id, "@removed": {"reason": "deleted"}}
        if user.soft_deleted:
            return {"id": user_id, "@removed": {"reason": "changed"}}
        return user.to_json(select)

    def _continue(self, state: dict[str, Any], more: bool, cursor: Any) -> dict[str, Any]:
        if more:
            return {"next": {**state, "c": cursor}}
        delta = {k: v for k, v in state.items() if k not in ("c", "to", "frm")}
        delta["frm"] = state["to"]
        return {"delta": delta}

    # -- groups/delta (members) -------------------------------------------------------------

    def groups_delta(
        self, state: dict[str, Any], *, split: bool = False
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """One page of `groups/delta?$select=displayName,members&$filter=id eq …`; state as
        for users, plus ids (the filter; None = every group). With `split` a group's
        members come in many small items, shuffled, removals first (quirks.py)."""
        with self.lock:
            self._check_epoch(state)
            size = int(state["n"])
            wanted = state.get("ids")
            named = "displayName" in (state.get("sel") or ())
            if split:
                return self._groups_split(state, wanted, size, named)
            if state.get("frm") is None:
                return self._groups_full(state, wanted, size, named)
            return self._groups_increment(state, wanted, size, named)

    def _group_item(self, group_id: str, named: bool) -> dict[str, Any]:
        item: dict[str, Any] = {"id": group_id}
        group = self.groups.get(group_id)
        if named and group is not None:
            item["displayName"] = group.display_name
        return item

    def _groups_full(
        self, state: dict[str, Any], wanted: list[str] | None, size: int, named: bool
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        # Live groups only: a filtered id that is deleted or unknown gets no item at all.
        group_ids = sorted(g for g in (wanted or self.groups) if g in self.groups)
        gi, last = state.get("c") or (0, None)
        items: list[dict[str, Any]] = []
        budget = size
        while gi < len(group_ids) and budget > 0:
            group = self.groups[group_ids[gi]]
            order = self._sorted_members(group)
            start = bisect.bisect_right(order, last) if last is not None else 0
            chunk = order[start : start + budget]
            item = self._group_item(group.id, named)
            if chunk:
                item["members@delta"] = [
                    {"@odata.type": ODATA_TYPE[group.members[m]], "id": m} for m in chunk
                ]
            if chunk or last is None:  # every group has an item, even without members
                items.append(item)
            budget -= max(len(chunk), 1)
            if start + len(chunk) >= len(order):
                gi, last = gi + 1, None
            else:
                last = chunk[-1]
        return items, self._continue(state, gi < len(group_ids), [gi, last])

    def _groups_increment(
        self, state: dict[str, Any], wanted: list[str] | None, size: int, named: bool
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        wanted_set = set(wanted) if wanted is not None else None
        events = [
            e
            for e in self.history[state["frm"] : state["to"]]
            if e[0] in ("m", "g") and (wanted_set is None or e[1] in wanted_set)
        ]
        flat = self._group_entries(events, named)
        start = int(state.get("c") or 0)
        items = self._group_items(flat[start : start + size], named)
        return items, self._continue(state, start + size < len(flat), start + size)

    def _groups_split(
        self, state: dict[str, Any], wanted: list[str] | None, size: int, named: bool
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """A round's entries in a shuffled order that is the same on every page of the round
        (seeded by the round), removals before additions; at most 3 members per item."""
        if state.get("frm") is None:
            group_ids = sorted(g for g in (wanted or self.groups) if g in self.groups)
            flat: list[tuple[Any, ...]] = []
            for group_id in group_ids:
                members = self.groups[group_id].members
                flat.append(("touch", group_id))
                flat += [("m", group_id, m, k, True) for m, k in sorted(members.items())]
        else:
            wanted_set = set(wanted) if wanted is not None else None
            events = [
                e
                for e in self.history[state["frm"] : state["to"]]
                if e[0] in ("m", "g") and (wanted_set is None or e[1] in wanted_set)
            ]
            flat = self._group_entries(events, named)
        random.Random(f"{state.get('frm')}:{state['to']}:{wanted}").shuffle(flat)
        flat.sort(key=lambda entry: entry[0] == "m" and bool(entry[4]))  # removals first
        start = int(state.get("c") or 0)
        items = self._group_items(flat[start : start + size], named, per_item=3)
        return items, self._continue(state, start + size < len(flat), start + size)

    def _group_entries(self, events: list[Event], named: bool) -> list[tuple[Any, ...]]:
        """The window's net changes as flat entries, grouped by group id: ("gone", group,
        reason) | ("touch", group) (an item without member changes) | ("m", group, member,
        kind, added)."""
        first: dict[tuple[str, str], bool] = {}
        last: dict[tuple[str, str], tuple[MemberKind, bool]] = {}
        kinds: dict[str, set[str]] = {}
        for event in events:
            if event[0] == "m":
                key = (event[1], event[2])
                first.setdefault(key, not event[4])  # state before the window
                last[key] = (event[3], event[4])
            else:
                kinds.setdefault(event[1], set()).add(_event_kind(event))
        net: dict[str, list[tuple[str, MemberKind, bool]]] = {}
        for (group_id, member_id), (kind, added) in last.items():
            if first[(group_id, member_id)] != added:
                net.setdefault(group_id, []).append((member_id, kind, added))
        entries: list[tuple[Any, ...]] = []
        for group_id in sorted(set(net) | set(kinds)):
            entries += self._entries_of(group_id, kinds.get(group_id, set()), net, named)
        return entries

    def _entries_of(
        self,
        group_id: str,
        kinds: set[str],
        net: dict[str, list[tuple[str, MemberKind, bool]]],
        named: bool,
    ) -> list[tuple[Any, ...]]:
        group = self.groups.get(group_id)
        if group is None:
            if not kinds:
                return []  # changed while in the recycle bin: its removal was reported then
            reason = "changed" if group_id in self.deleted_groups else "deleted"
            return [("gone", group_id, reason)]
        changes = sorted(net.get(group_id, []))
        if "restore" in kinds:
            # The client dropped the group with its members: state every member again.
            gone = [c for c in changes if not c[2] and c[0] not in group.members]
            changes = sorted([*((m, k, True) for m, k in group.members.items()), *gone])
        touched = "restore" in kinds or (named and bool(kinds))
        entries: list[tuple[Any, ...]] = [("touch", group_id)] if touched else []
        return entries + [("m", group_id, m, k, added) for m, k, added in changes]

    def _group_items(
        self, page: list[tuple[Any, ...]], named: bool, per_item: int | None = None
    ) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for entry in page:
            if entry[0] == "gone":
                items.append({"id": entry[1], "@removed": {"reason": entry[2]}})
                continue
            last = items[-1] if items else None
            if (
                last is None
                or last["id"] != entry[1]
                or "@removed" in last
                or (per_item is not None and len(last.get("members@delta", ())) >= per_item)
            ):
                items.append(self._group_item(entry[1], named))
            if entry[0] == "m":
                _, _, member_id, kind, added = entry
                member: dict[str, Any] = {"@odata.type": ODATA_TYPE[kind], "id": member_id}
                if not added:
                    member["@removed"] = {"reason": "deleted"}
                items[-1].setdefault("members@delta", []).append(member)
        return items
