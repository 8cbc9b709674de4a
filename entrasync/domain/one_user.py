"""An on-demand sync of one person (`entrasync sync --user IDENT`), pure rules (no I/O).

Planning is not written twice: the store's facts are cut down to the slice about one Entra
object and the records that are that person (`person_facts`), and `planning.plan` plans it
exactly as a cycle would. Whatever else the facts hold (other people's changes the last
cycle has not acted on yet) is left to the next cycle.

Membership is read directly from Graph (`checkMemberGroups`: transitive, like the groups)
instead of from a `groups/delta` round, so the mirror's direct edges are corrected for this
person only (`membership_fix`), in a way the next cycle's delta round agrees with: an edge
Graph denies is dropped, and a membership the mirror cannot explain gets an edge from the
deepest group known to contain the person.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from entrasync.domain.entra import MembershipEdge, reachable_groups
from entrasync.domain.plan_model import Facts, IdentityMatch, Plan, Policy, StoreUser
from entrasync.domain.planning import plan


@dataclass(frozen=True)
class Person:
    """The Entra object being synced and the store records known to be that person (the
    record IDENT named, when it is not linked to another object)."""

    object_id: str
    user_ids: frozenset[int] = field(default_factory=frozenset)


def plan_person(facts: Facts, policy: Policy, person: Person) -> Plan:
    """What a cycle would do about this person, and nothing else."""
    return plan(person_facts(facts, person), policy)


def _claimed(matches: Iterable[IdentityMatch], object_id: str) -> set[int]:
    """Records whose strongest evidence points at `object_id` (alone or tied with another
    object, which the planner reports as ambiguous)."""
    by_user: dict[int, list[IdentityMatch]] = {}
    for match in matches:
        by_user.setdefault(match.user.id, []).append(match)
    claimed: set[int] = set()
    for uid, found in by_user.items():
        best = min(m.rank for m in found)
        if any(m.object_id == object_id and m.rank == best for m in found):
            claimed.add(uid)
    return claimed


def person_facts(facts: Facts, person: Person) -> Facts:
    """The slice of `facts` about one person: their Entra object, the records linked to it
    or claimed by its keys, and the records IDENT named."""
    oid = person.object_id
    claimed = _claimed(facts.identity_matches, oid)
    mine = set(person.user_ids) | claimed
    linked = facts.linked.get(oid)
    if linked is not None:
        mine.add(linked.id)

    def theirs(user: StoreUser) -> bool:
        return user.id in mine or user.entra_object_id == oid

    return Facts(
        identity_matches=[m for m in facts.identity_matches if m.user.id in claimed],
        linked={o: u for o, u in facts.linked.items() if o == oid},
        watched=[w for w in facts.watched if w.object_id == oid],
        retrack=[u for u in facts.retrack if theirs(u)],
        deleted=[d for d in facts.deleted if d[0] == oid or theirs(d[2])],
        disabled=[u for u in facts.disabled if theirs(u)],
        retirements=[r for r in facts.retirements if r.user_id in mine or r.new_object == oid],
        scheduled=[s for s in facts.scheduled if s.user_id in mine or s.object_id == oid],
    )


@dataclass(frozen=True)
class EdgeFix:
    """Direct edges (group -> this person) to add to and drop from the mirror."""

    add: frozenset[str]
    drop: frozenset[str]


def groups_to_check(group_edges: Iterable[MembershipEdge], roots: Iterable[str]) -> set[str]:
    """The groups to ask `checkMemberGroups` about: the trusted watched groups and every
    group nested in them that the mirror knows."""
    return reachable_groups(group_edges, roots)


def membership_fix(
    group_edges: Iterable[MembershipEdge],
    checked: Iterable[str],
    member_of: Iterable[str],
    parents: Iterable[str],
) -> EdgeFix:
    """Correct the person's direct edges from what Graph answered.

    `checked`: the groups asked about; `member_of`: those Graph says the person is in
    (transitively); `parents`: the groups the mirror has the person directly in.

    * An edge from a checked group Graph denies is wrong: dropped (the delta round reports
      its removal later, a no-op then).
    * A checked group Graph confirms whose known nested groups do not contain the person
      (the deepest ones) holds them directly, or through a nested group the mirror does not
      know yet: an edge from it is added when missing. The delta round later reports the
      same edge (a no-op), or the nested group, whose stream the next cycle reads; an edge
      added for an unknown nested group is corrected by the next full read or `sync --user`,
      and a purge is always confirmed with Graph before it runs.
    """
    checked_set, inside = set(checked), set(member_of) & set(checked)
    children: dict[str, set[str]] = {}
    for edge in group_edges:
        if edge.member_kind == "group":
            children.setdefault(edge.group_id, set()).add(edge.member_id)
    deepest = {g for g in inside if not (children.get(g, set()) & inside)}
    present = set(parents)
    return EdgeFix(
        add=frozenset(deepest - present),
        drop=frozenset((present & checked_set) - inside),
    )


def watched_rows(roots: Mapping[str, list[str]], member_of: Iterable[str]) -> dict[str, str]:
    """The person's effective memberships of the (trusted) watched groups: group -> kind."""
    inside = set(member_of)
    return {group: kind for kind, groups in roots.items() for group in groups if group in inside}
