"""The planner: mirror + store facts -> the actions a cycle takes (pure, no I/O).

The store adapter gathers *discrepancies only* with a handful of set-based queries (a user
in a watched group who is still tracked, an unlinked record that matches an Entra object's
keys, …), so a cycle with no changes plans nothing and does no per-user work, and a full
reconciliation after a resync is the same few queries. Because the plan is derived from
state, not from the increments of one round, a cycle interrupted at any point is finished by
the next one without repeating what was already done.

Identity comes first: records that Entra says are one person are linked to the Entra object
and merged (survivor: the record already linked to the object, else an active record over a
pending one, else the most recently active). Membership then decides tracking: Delete wins
over DNT; members unknown to the store are pre-registered Untracked; a Delete member's data
is purged once `purge_delay` has passed since entrasync first saw the membership.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from entrasync.domain.evidence import EVIDENCE_TEXT

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ActionKind(StrEnum):
    LINK = "link"
    MERGE = "merge"
    MERGE_SKIPPED = "merge_skipped"
    PREREGISTER = "preregister"
    UNTRACK = "untrack"
    PURGE = "purge"
    RETRACK = "retrack"


# Kinds a safety threshold can hold (config key: safety.max_<kind>s).
GUARDED = (ActionKind.PURGE, ActionKind.UNTRACK, ActionKind.RETRACK, ActionKind.MERGE)


@dataclass(frozen=True)
class StoreUser:
    id: int
    entra_object_id: str | None
    tracking: str
    untracked_by: str | None
    status: str
    agents: int
    licenses: int
    last_activity_at: datetime | None


@dataclass(frozen=True)
class IdentityMatch:
    """A store record carrying one of an Entra object's keys (rank = evidence strength)."""

    object_id: str
    rank: int
    user: StoreUser


@dataclass(frozen=True)
class WatchedMember:
    object_id: str
    kind: str  # "dnt" | "delete"
    via_group: str
    first_seen_at: datetime
    user: StoreUser | None  # the record linked to the object, if any


@dataclass(frozen=True)
class Facts:
    identity_matches: list[IdentityMatch] = field(default_factory=list)
    linked: Mapping[str, StoreUser] = field(default_factory=dict)  # object -> linked record
    watched: list[WatchedMember] = field(default_factory=list)
    retrack: list[StoreUser] = field(default_factory=list)
    # (object, when entrasync saw the deletion, linked record)
    deleted: list[tuple[str, datetime, StoreUser]] = field(default_factory=list)


@dataclass(frozen=True)
class Policy:
    now: datetime
    purge_delay: timedelta
    retrack_on_removal: bool
    merge_enabled: bool
    agent_merge: str
    on_user_deleted: str  # ignore | untrack | purge
    group_names: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PlannedAction:
    kind: ActionKind
    reason: str
    user_id: int | None = None  # the record acted on (merge: the survivor)
    object_id: str | None = None
    source_user_ids: tuple[int, ...] = ()  # merge: records folded into user_id
    licenses_freed: int = 0
    untracked_by: str = "entrasync"

    @property
    def target(self) -> str:
        """Stable identity of the action, to recognise it again when re-planned."""
        return f"{self.kind}:{self.user_id}:{self.object_id}:{','.join(map(str, self.source_user_ids))}"


@dataclass(frozen=True)
class ScheduledPurge:
    user_id: int
    object_id: str
    due_at: datetime
    licenses: int


@dataclass
class Plan:
    actions: list[PlannedAction] = field(default_factory=list)
    scheduled: list[ScheduledPurge] = field(default_factory=list)

    def of_kind(self, kind: ActionKind) -> list[PlannedAction]:
        return [a for a in self.actions if a.kind == kind]


def plan(facts: Facts, policy: Policy) -> Plan:
    result = Plan()
    resolved = _plan_identity(facts, policy, result)
    _plan_membership(facts, policy, resolved, result)
    _plan_retracks(facts, policy, result)
    _plan_deleted(facts, policy, result)
    return result


def _survivor_order(user: StoreUser) -> tuple[int, float, int]:
    """Active before pending, then the most recently active, then the oldest record."""
    last = (user.last_activity_at or _EPOCH).timestamp()
    return (0 if user.status == "active" else 1, -last, user.id)


def _plan_identity(facts: Facts, policy: Policy, out: Plan) -> dict[str, StoreUser]:
    """Links and merges; returns object -> the record that will stand for it."""
    claims: dict[int, list[IdentityMatch]] = defaultdict(list)
    for match in facts.identity_matches:
        claims[match.user.id].append(match)
    members: dict[str, dict[int, tuple[StoreUser, int]]] = defaultdict(dict)
    for matches in claims.values():
        _assign_claims(matches, members, out)
    resolved: dict[str, StoreUser] = {}
    for object_id, found in sorted(members.items()):
        linked = facts.linked.get(object_id)
        candidates = {uid: user for uid, (user, _rank) in found.items()}
        if linked is not None:
            candidates[linked.id] = linked
        ordered = sorted(candidates.values(), key=_survivor_order)
        survivor = linked or ordered[0]
        sources = [u for u in ordered if u.id != survivor.id]
        resolved[object_id] = survivor
        if sources and policy.merge_enabled:
            rank = min(found[u.id][1] for u in sources if u.id in found)
            out.actions.append(_merge_action(object_id, survivor, sources, rank, policy))
        elif survivor.entra_object_id is None:
            out.actions.append(
                PlannedAction(
                    ActionKind.LINK, "identifiers match the Entra object", survivor.id, object_id
                )
            )
    return resolved


def _assign_claims(
    matches: list[IdentityMatch], members: dict[str, dict[int, tuple[StoreUser, int]]], out: Plan
) -> None:
    user = matches[0].user
    best = min(m.rank for m in matches)
    objects = sorted({m.object_id for m in matches if m.rank == best})
    if user.entra_object_id is not None:
        # Linked to another object that no longer claims this key: UPN reuse.
        for object_id in objects:
            out.actions.append(
                PlannedAction(
                    ActionKind.MERGE_SKIPPED,
                    f"record is linked to Entra object {user.entra_object_id}, not {object_id}: "
                    "never merged across Entra objects (UPN reuse)",
                    user.id,
                    object_id,
                )
            )
        return
    if len(objects) > 1:
        out.actions.append(
            PlannedAction(
                ActionKind.MERGE_SKIPPED,
                f"identifiers match several Entra objects equally ({', '.join(objects)})",
                user.id,
                objects[0],
            )
        )
        return
    members[objects[0]][user.id] = (user, best)


def _merge_action(
    object_id: str, survivor: StoreUser, sources: list[StoreUser], rank: int, policy: Policy
) -> PlannedAction:
    everyone = [survivor, *sources]
    before = sum(u.licenses for u in everyone)
    after = min(before, 1) if policy.agent_merge == "all" else before
    if survivor.status != "active":
        after = 0
    return PlannedAction(
        ActionKind.MERGE,
        f"same person in Entra (object {object_id}): {EVIDENCE_TEXT[rank]}",
        survivor.id,
        object_id,
        tuple(u.id for u in sources),
        licenses_freed=max(0, before - after),
    )


def _plan_membership(
    facts: Facts, policy: Policy, resolved: Mapping[str, StoreUser], out: Plan
) -> None:
    for member in _delete_wins(facts.watched):
        user = member.user or resolved.get(member.object_id)
        group = policy.group_names.get(member.via_group, member.via_group)
        label = "Delete" if member.kind == "delete" else "Do Not Track"
        since = f"member of {label} group {group} since {member.first_seen_at:%Y-%m-%d %H:%M} UTC"
        if user is None:
            out.actions.append(
                PlannedAction(
                    ActionKind.PREREGISTER, f"{since}; not in the store yet", None, member.object_id
                )
            )
            continue
        if user.tracking == "tracked":
            out.actions.append(PlannedAction(ActionKind.UNTRACK, since, user.id, member.object_id))
        if member.kind == "delete" and user.agents > 0:
            due = member.first_seen_at + policy.purge_delay
            if due <= policy.now:
                out.actions.append(
                    PlannedAction(
                        ActionKind.PURGE,
                        f"{since} (purge delay {policy.purge_delay} passed)",
                        user.id,
                        member.object_id,
                        licenses_freed=user.licenses,
                    )
                )
            else:
                out.scheduled.append(ScheduledPurge(user.id, member.object_id, due, user.licenses))


def _delete_wins(watched: Iterable[WatchedMember]) -> list[WatchedMember]:
    chosen: dict[str, WatchedMember] = {}
    for member in watched:
        current = chosen.get(member.object_id)
        if current is None or (member.kind == "delete" and current.kind != "delete"):
            chosen[member.object_id] = member
    return [chosen[k] for k in sorted(chosen)]


def _plan_retracks(facts: Facts, policy: Policy, out: Plan) -> None:
    if not policy.retrack_on_removal:
        return
    for user in facts.retrack:
        out.actions.append(
            PlannedAction(
                ActionKind.RETRACK,
                "no longer in a Do Not Track or Delete group, and entrasync had untracked them",
                user.id,
                user.entra_object_id,
            )
        )


def _plan_deleted(facts: Facts, policy: Policy, out: Plan) -> None:
    """A deleted Entra user is untracked at once; with `purge`, their data goes after the
    purge delay like a Delete-group member's (a soft-deleted user restored in that window
    keeps it)."""
    if policy.on_user_deleted == "ignore":
        return
    for object_id, deleted_at, user in facts.deleted:
        reason = (
            f"Entra user {object_id} deleted (seen {deleted_at:%Y-%m-%d %H:%M} UTC; "
            f"sync.on_user_deleted = {policy.on_user_deleted})"
        )
        if user.tracking == "tracked":
            out.actions.append(
                PlannedAction(
                    ActionKind.UNTRACK, reason, user.id, object_id, untracked_by="entra-deleted"
                )
            )
        if policy.on_user_deleted != "purge" or user.agents == 0:
            continue
        due = deleted_at + policy.purge_delay
        if due > policy.now:
            out.scheduled.append(ScheduledPurge(user.id, object_id, due, user.licenses))
            continue
        out.actions.append(
            PlannedAction(
                ActionKind.PURGE,
                reason,
                user.id,
                object_id,
                licenses_freed=user.licenses,
                untracked_by="entra-deleted",
            )
        )
