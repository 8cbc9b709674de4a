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

import functools
from collections import defaultdict
from collections.abc import Iterable, Mapping, Set
from datetime import UTC, datetime

from entrasync.domain.actions import ActionKind
from entrasync.domain.durations import format_duration
from entrasync.domain.evidence import EVIDENCE_TEXT
from entrasync.domain.groups import GroupKind, group_label
from entrasync.domain.plan_model import (
    Facts,
    IdentityMatch,
    Plan,
    PlannedAction,
    Policy,
    PurgeCause,
    Retirement,
    ScheduledPurge,
    ScheduledRecord,
    StoreUser,
    SuspendedPurge,
    WatchedMember,
)
from entrasync.domain.purges import (
    live_purges,
    plan_cancellations,
    plan_purge,
    plan_scheduled,
)
from entrasync.domain.status import Tracking, UntrackedBy, UserStatus

__all__ = [
    "Facts",
    "IdentityMatch",
    "Plan",
    "PlannedAction",
    "Policy",
    "PurgeCause",
    "Retirement",
    "ScheduledPurge",
    "ScheduledRecord",
    "StoreUser",
    "SuspendedPurge",
    "WatchedMember",
    "live_purges",
    "plan",
    "plan_cancellations",
    "plan_head",
    "plan_members",
    "plan_rest",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def plan(facts: Facts, policy: Policy) -> Plan:
    result, resolved = plan_head(facts, policy)
    _plan_membership(facts.watched, policy, resolved, result)
    _plan_rest(facts, policy, result)
    known = {s.user_id for s in facts.scheduled}
    plan_scheduled(result.scheduled, known, policy, result)
    result.actions.extend(plan_cancellations(facts.scheduled, live_purges(result), policy))
    return result


# A plan in parts, in the order `plan` makes it, for a cycle that plans the watched members
# in batches (sync/batches.py): the head (identity), then the members batch by batch, then
# the tail (re-tracking, deleted and disabled accounts, cancelled purges).


def plan_head(facts: Facts, policy: Policy) -> tuple[Plan, dict[str, StoreUser]]:
    """Retired identifiers, links and merges; and object -> the record that will stand for
    it (what the membership part reads)."""
    result = Plan()
    _plan_retirements(facts, result)
    return result, _plan_identity(facts, policy, result)


def plan_members(
    watched: list[WatchedMember],
    policy: Policy,
    resolved: Mapping[str, StoreUser],
    known: Set[int],
) -> Plan:
    """One batch of watched members (all the memberships of each object in it), with the
    audit of purges scheduled for the first time (`known`: users with a scheduled purge)."""
    result = Plan()
    _plan_membership(watched, policy, resolved, result)
    plan_scheduled(result.scheduled, known, policy, result)
    return result


def plan_rest(facts: Facts, policy: Policy, known: Set[int]) -> Plan:
    """Re-tracking, deleted and disabled accounts, with their newly scheduled purges."""
    result = Plan()
    _plan_rest(facts, policy, result)
    plan_scheduled(result.scheduled, known, policy, result)
    return result


def _plan_rest(facts: Facts, policy: Policy, out: Plan) -> None:
    _plan_retracks(facts, policy, out)
    _plan_deleted(facts, policy, out)
    _plan_disabled(facts, policy, out)


def _survivor_order(user: StoreUser) -> tuple[int, float, int]:
    """Active before pending, then the most recently active, then the oldest record."""
    last = (user.last_activity_at or _EPOCH).timestamp()
    return (0 if user.status == UserStatus.ACTIVE else 1, -last, user.id)


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
        return  # linked to another object: never merged across objects (UPN reuse retires)
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
    if survivor.status != UserStatus.ACTIVE:
        after = 0
    return PlannedAction(
        ActionKind.MERGE,
        f"same person in Entra (object {object_id}): {EVIDENCE_TEXT[rank]}",
        survivor.id,
        object_id,
        tuple(u.id for u in sources),
        licenses_freed=max(0, before - after),
    )


def _plan_retirements(facts: Facts, out: Plan) -> None:
    for r in facts.retirements:
        why = (
            f"Entra account {r.old_object} of this record is deleted"
            if r.old_deleted
            else f"Entra account {r.old_object} of this record no longer has it"
        )
        out.actions.append(
            PlannedAction(
                ActionKind.RETIRE_IDENTIFIER,
                f"{r.kind} {r.value} now belongs to Entra account {r.new_object} and {why}: "
                "retired on this record (UPN reuse), never merged across accounts",
                r.user_id,
                r.new_object,
                identifier=(r.kind, r.value),
            )
        )


def _plan_membership(
    watched: Iterable[WatchedMember], policy: Policy, resolved: Mapping[str, StoreUser], out: Plan
) -> None:
    by_object: dict[str, list[WatchedMember]] = defaultdict(list)
    for member in watched:
        by_object[member.object_id].append(member)
    for object_id in sorted(by_object):
        memberships = by_object[object_id]
        user = memberships[0].user or resolved.get(object_id)
        trusted = [m for m in memberships if not m.suspect]
        _plan_suspended(user, memberships, trusted, policy, out)
        if trusted:
            _plan_member(_delete_wins(trusted), user, policy, out)


def _plan_member(member: WatchedMember, user: StoreUser | None, policy: Policy, out: Plan) -> None:
    since = _member_since(
        group_label(member.kind), policy.group(member.via_group), member.first_seen_at
    )
    if user is None:
        out.actions.append(
            PlannedAction(
                ActionKind.PREREGISTER,
                f"{since}; not in the store yet",
                None,
                member.object_id,
                group_id=member.via_group,
            )
        )
        return
    if user.tracking == Tracking.TRACKED:
        out.actions.append(
            PlannedAction(
                ActionKind.UNTRACK, since, user.id, member.object_id, group_id=member.via_group
            )
        )
    if member.kind == GroupKind.DELETE and user.agents > 0:
        plan_purge(
            user,
            member.object_id,
            member.first_seen_at + policy.purge_delay,
            f"{since} (purge delay {format_duration(policy.purge_delay)} passed)",
            PurgeCause.DELETE_GROUP,
            member.via_group,
            policy,
            out,
        )


@functools.lru_cache(maxsize=4096)
def _member_since(label: str, group: str, first_seen_at: datetime) -> str:
    """The reason of a member's actions: one string for all who joined a group at one
    time (a first sync plans one action per member of the watched groups)."""
    return f"member of {label} group {group} since {first_seen_at:%Y-%m-%d %H:%M} UTC"


def _plan_suspended(
    user: StoreUser | None,
    memberships: list[WatchedMember],
    trusted: list[WatchedMember],
    policy: Policy,
    out: Plan,
) -> None:
    """A Delete member through a suspect group only: their purge waits for the group."""
    if user is None or user.agents == 0:
        return
    if any(m.kind == GroupKind.DELETE for m in trusted):
        return
    for m in memberships:
        if m.suspect and m.kind == GroupKind.DELETE:
            why = policy.suspect.get(m.via_group, "the group's read is suspect")
            out.suspended.append(SuspendedPurge(user.id, m.object_id, m.via_group, why))
            return


def _delete_wins(memberships: Iterable[WatchedMember]) -> WatchedMember:
    """One person's deciding membership: Delete over DNT, then the longest-standing one
    (its `first_seen_at` starts the purge delay)."""
    return min(memberships, key=lambda m: (m.kind != GroupKind.DELETE, m.first_seen_at))


def _plan_retracks(facts: Facts, policy: Policy, out: Plan) -> None:
    if not policy.retrack_on_removal:
        return
    for user in facts.retrack:
        out.actions.append(
            PlannedAction(ActionKind.RETRACK, _retrack_reason(user), user.id, user.entra_object_id)
        )


def _retrack_reason(user: StoreUser) -> str:
    if user.untracked_by == UntrackedBy.ENTRA_DISABLED:
        return "Entra account enabled again, and entrasync had untracked them while it was disabled"
    return "no longer in a Do Not Track or Delete group, and entrasync had untracked them"


def _plan_disabled(facts: Facts, policy: Policy, out: Plan) -> None:
    """A disabled Entra account ("block sign-in") untracks its record; history is kept (a
    disabled account is reversible, a purge is not). Watched-group members are left to the
    membership rules, which win."""
    if policy.on_user_disabled != "untrack":
        return
    for user in facts.disabled:
        out.actions.append(
            PlannedAction(
                ActionKind.UNTRACK,
                f"Entra account {user.entra_object_id} disabled (accountEnabled = false; "
                "sync.on_user_disabled = untrack)",
                user.id,
                user.entra_object_id,
                untracked_by=UntrackedBy.ENTRA_DISABLED,
            )
        )


def _plan_deleted(facts: Facts, policy: Policy, out: Plan) -> None:
    """A deleted Entra user is untracked at once; with `purge`, their data goes after the
    purge delay like a Delete-group member's (a soft-deleted user restored in that window
    keeps it, and Graph is asked right before the purge whether the account is still gone)."""
    if policy.on_user_deleted == "ignore":
        return
    for object_id, deleted_at, user in facts.deleted:
        reason = (
            f"Entra user {object_id} deleted (seen {deleted_at:%Y-%m-%d %H:%M} UTC; "
            f"sync.on_user_deleted = {policy.on_user_deleted})"
        )
        if user.tracking == Tracking.TRACKED:
            out.actions.append(
                PlannedAction(
                    ActionKind.UNTRACK,
                    reason,
                    user.id,
                    object_id,
                    untracked_by=UntrackedBy.ENTRA_DELETED,
                )
            )
        if policy.on_user_deleted == "purge" and user.agents > 0:
            due = deleted_at + policy.purge_delay
            plan_purge(user, object_id, due, reason, PurgeCause.ENTRA_DELETED, None, policy, out)
