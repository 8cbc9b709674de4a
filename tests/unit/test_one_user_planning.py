"""The pure rules of `sync --user` (domain/one_user.py): the slice of the facts about one
person, and the correction of their direct edges from Graph's `checkMemberGroups` answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from entrasync.domain.actions import ActionKind
from entrasync.domain.entra import MembershipEdge
from entrasync.domain.groups import GroupKind
from entrasync.domain.one_user import Person, membership_fix, plan_person, watched_rows
from entrasync.domain.plan_model import Facts, IdentityMatch, Policy, StoreUser, WatchedMember

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
POLICY = Policy(
    now=NOW,
    purge_delay=timedelta(hours=24),
    retrack_on_removal=True,
    merge_enabled=True,
    agent_merge="all",
    on_user_deleted="ignore",
)


def _user(uid: int, oid: str | None = None, tracking: str = "tracked") -> StoreUser:
    return StoreUser(uid, oid, tracking, None, "active", 1, 1, NOW)


def _member(oid: str, user: StoreUser | None, kind: GroupKind = GroupKind.DNT) -> WatchedMember:
    return WatchedMember(oid, kind, "g-" + kind, NOW - timedelta(hours=1), user)


def test_only_the_persons_actions_are_planned() -> None:
    ann, bob = _user(1, "ann"), _user(2, "bob")
    duplicate = _user(3)  # an unlinked record carrying ann's new UPN
    facts = Facts(
        identity_matches=[IdentityMatch("ann", 1, duplicate)],
        linked={"ann": ann},
        watched=[_member("ann", ann), _member("bob", bob), _member("carl", None)],
        retrack=[_user(4, "dee", "untracked")],
    )
    the_plan = plan_person(facts, POLICY, Person("ann"))
    assert [(a.kind, a.user_id) for a in the_plan.actions] == [
        (ActionKind.MERGE, 1),
        (ActionKind.UNTRACK, 1),
    ]
    everyone = plan_person(facts, POLICY, Person("bob"))
    assert [(a.kind, a.user_id) for a in everyone.actions] == [(ActionKind.UNTRACK, 2)]


def test_a_record_claimed_by_another_object_is_left_to_the_cycle() -> None:
    record = _user(5)
    facts = Facts(
        identity_matches=[IdentityMatch("ann", 2, record), IdentityMatch("bob", 1, record)]
    )
    assert plan_person(facts, POLICY, Person("ann")).actions == []
    linked = plan_person(facts, POLICY, Person("bob")).actions
    assert [(a.kind, a.object_id) for a in linked] == [(ActionKind.LINK, "bob")]


def test_edges_follow_graphs_answer() -> None:
    nested = [MembershipEdge("dnt", "team", "group"), MembershipEdge("team", "sub", "group")]
    checked = {"dnt", "team", "sub", "delete"}
    # in `team` (and so in `dnt`): the edge goes on the deepest group Graph confirms
    fix = membership_fix(nested, checked, {"dnt", "team"}, parents=set())
    assert fix.add == {"team"} and fix.drop == set()
    # already explained by the mirror: nothing to do
    assert membership_fix(nested, checked, {"dnt", "team"}, {"team"}).add == set()
    # left every group: the mirror's edges Graph denies go, others are not touched
    fix = membership_fix(nested, checked, set(), {"team", "unwatched"})
    assert fix.drop == {"team"} and fix.add == set()
    assert watched_rows({"dnt": ["dnt"], "delete": ["delete"]}, {"dnt", "team"}) == {"dnt": "dnt"}
