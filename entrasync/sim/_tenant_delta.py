"""The delta-query logic over the tenant's history (tenant.py describes the design and the
shapes Microsoft documents): `users/delta` and `groups/delta` pages, full rounds paged by a
sorted snapshot, increments as the window's net changes.
"""

from __future__ import annotations

import bisect
import random
import threading
from typing import Any

from entrasync.sim._objects import (
    ODATA_TYPE,
    Event,
    MemberKind,
    SimGroup,
    SimUser,
    SyncStateExpired,
    event_kind,
)


class DeltaQueries:
    """The reads of delta rounds; `Tenant` holds the state they read."""

    lock: threading.RLock
    users: dict[str, SimUser]
    groups: dict[str, SimGroup]
    deleted_groups: dict[str, SimGroup]
    history: list[Event]
    epoch: int
    report_restores: bool
    _user_order: list[str] | None
    _member_order: dict[str, tuple[int, list[str]]]
    _changed: dict[int, frozenset[str]]

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
                kind = event_kind(event) if event[0] == "u" else None
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
                if event[0] != kind or event_kind(event) != "delete":
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
                kinds.setdefault(event[1], set()).add(event_kind(event))
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
                kinds.setdefault(event[1], set()).add(event_kind(event))
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
