"""Entra data as the rest of entrasync sees it: plain, immutable values, no I/O.

The Graph adapter (`entrasync.graph`) turns SDK objects into these types, so nothing above
the adapter depends on msgraph-sdk. A delta round is delivered as pages (`UserPage`,
`GroupPage`); each page says which stream it came from and whether the stream is being
read as a *full* round (first round, or a resync after Graph forgot the delta token) or as
increments. See `entrasync.graph.client` for how a caller consumes them.

`effective_members` computes transitive membership from the mirrored direct edges (the
reference: the store derives the same rows in SQL, store/groups.py `derive_watched`, and
tests hold the two equal); it tolerates cycles in nesting (Entra allows a group to be nested, directly or indirectly, in
itself through hybrid sync and some admin tools, and the result must still terminate).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Literal

MemberKind = Literal["user", "group", "other"]
"""`other` covers devices, service principals and contacts: members we do not act on."""


USER_FIELDS = frozenset(
    {
        "user_principal_name",
        "mail",
        "proxy_addresses",
        "on_premises_user_principal_name",
        "on_premises_sam_account_name",
        "on_premises_domain_name",
        "employee_id",
        "display_name",
        "account_enabled",
    }
)
"""The properties of `EntraUser` that a delta item may carry or leave out."""


@dataclass(frozen=True, slots=True)
class EntraUser:
    """A user as read by `users/delta` with the identity properties selected.

    `present` names the properties the item carried. Graph may leave out properties that did
    not change (`Prefer: return=minimal`, or never set): an absent property keeps the value
    already mirrored, and only an explicit null clears it
    (https://learn.microsoft.com/graph/api/user-delta, "Response"). The value of an absent
    property here is the field's default and means nothing; `merged_with` fills it in.
    """

    id: str
    user_principal_name: str | None = None
    mail: str | None = None
    proxy_addresses: tuple[str, ...] = ()
    on_premises_user_principal_name: str | None = None
    on_premises_sam_account_name: str | None = None
    on_premises_domain_name: str | None = None
    employee_id: str | None = None
    display_name: str | None = None
    # None: not known (never read). Only an explicit false counts as disabled.
    account_enabled: bool | None = None
    present: frozenset[str] = USER_FIELDS

    @property
    def complete(self) -> bool:
        return self.present >= USER_FIELDS

    def merged_with(self, known: EntraUser | None) -> EntraUser:
        """This item's properties over `known` (the user as mirrored, or None for a user
        not mirrored yet: absent properties are then empty). The result is complete."""
        if self.complete:
            return self
        base = known if known is not None else EntraUser(self.id)
        kept = {name: getattr(base, name) for name in USER_FIELDS - self.present}
        return replace(self, present=USER_FIELDS, **kept)


@dataclass(frozen=True, slots=True)
class UserRemoval:
    """A user left the directory. `permanent` is False for a soft delete (reason `changed`:
    the user sits in the recycle bin for 30 days and may be restored) and True for a hard
    delete (reason `deleted`)."""

    id: str
    permanent: bool


@dataclass(frozen=True, slots=True)
class MembershipChange:
    """One direct member added to or removed from a group (`members@delta`)."""

    group_id: str
    member_id: str
    member_kind: MemberKind
    removed: bool = False


@dataclass(frozen=True, slots=True)
class MembershipEdge:
    """A direct membership as mirrored: `member_id` is a direct member of `group_id`."""

    group_id: str
    member_id: str
    member_kind: MemberKind


@dataclass(frozen=True, slots=True)
class UserPage:
    """One page of a `users/delta` round.

    `first` marks the first page of a round of this stream; when `full` is also set the
    caller starts collecting the ids it sees, and at the end of the round every mirrored
    user *not* seen is gone. A stream can restart mid-round (its delta token expired): the
    restart arrives as another page with `first` and `full` set and `resync` True, and
    whatever the caller collected for the stream before it must be discarded.
    """

    stream: str
    first: bool
    full: bool
    resync: bool
    users: tuple[EntraUser, ...] = ()
    removals: tuple[UserRemoval, ...] = ()


@dataclass(frozen=True, slots=True)
class GroupPage:
    """One page of a `groups/delta` round (membership only).

    `groups` are the group ids the stream covers (its `$filter`). In a full round every
    change is an addition, and a covered group whose members are not reported has none.
    `deleted_groups` are covered groups that Graph reported as removed from the directory;
    `seen_groups` those that had an item of their own (a covered group absent from every page
    of a full round does not exist, or cannot be read).
    The same group may appear on several pages when it has many members. `first`, `full`
    and `resync` mean what they mean on `UserPage`.
    """

    stream: str
    first: bool
    full: bool
    resync: bool
    groups: tuple[str, ...]
    changes: tuple[MembershipChange, ...] = ()
    deleted_groups: tuple[str, ...] = ()
    # Covered groups that had an item on this page without `@removed` (the group exists),
    # and the display names Graph sent for them (`$select=displayName,members`).
    seen_groups: tuple[str, ...] = ()
    names: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class GroupInfo:
    """A group's name and direct member count (for `check-config`)."""

    id: str
    display_name: str | None
    member_count: int | None


def effective_members(
    direct_edges: Iterable[MembershipEdge], roots: Iterable[str]
) -> dict[str, set[str]]:
    """Transitive user members of each root group, following nested groups.

    Cycles are tolerated: each group is expanded once per root (a visited set), so a group
    nested in itself contributes its users once and the walk ends.
    """
    children: dict[str, list[str]] = {}
    users: dict[str, set[str]] = {}
    for edge in direct_edges:
        if edge.member_kind == "user":
            users.setdefault(edge.group_id, set()).add(edge.member_id)
        elif edge.member_kind == "group":
            children.setdefault(edge.group_id, []).append(edge.member_id)
    result: dict[str, set[str]] = {}
    for root in roots:
        found: set[str] = set()
        visited = {root}
        pending = [root]
        while pending:
            group = pending.pop()
            found |= users.get(group, set())
            for child in children.get(group, ()):
                if child not in visited:
                    visited.add(child)
                    pending.append(child)
        result[root] = found
    return result


def reachable_groups(direct_edges: Iterable[MembershipEdge], roots: Iterable[str]) -> set[str]:
    """Every group reachable from the roots through nesting, roots included (cycle-safe).

    The caller uses it to decide which child groups keep their own delta stream."""
    children: Mapping[str, list[str]] = _child_map(direct_edges)
    seen = set(roots)
    pending = list(seen)
    while pending:
        for child in children.get(pending.pop(), ()):
            if child not in seen:
                seen.add(child)
                pending.append(child)
    return seen


def _child_map(edges: Iterable[MembershipEdge]) -> dict[str, list[str]]:
    children: dict[str, list[str]] = {}
    for edge in edges:
        if edge.member_kind == "group":
            children.setdefault(edge.group_id, []).append(edge.member_id)
    return children
