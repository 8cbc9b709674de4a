"""Sure links (domain/linking.py) are exactly links the planner would make, and linking them
first leaves the rest of the plan as it was."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from entrasync.domain.actions import ActionKind
from entrasync.domain.linking import sure_links
from entrasync.domain.planning import Facts, IdentityMatch, Plan, Policy, StoreUser, plan

NOW = datetime(2026, 6, 1, tzinfo=UTC)
OBJECTS = [f"obj-{i}" for i in range(6)]


def _user(uid: int, linked: str | None = None, status: str = "active") -> StoreUser:
    return StoreUser(uid, linked, "tracked", None, status, 1, 1, NOW - timedelta(days=uid))


# Each unlinked record (ids 1..8) matches some objects at ranks 1..3; some objects are
# already linked to a record of their own (ids 100+).
matches_st = st.dictionaries(
    st.integers(1, 8),
    st.dictionaries(st.sampled_from(OBJECTS), st.integers(1, 3), min_size=1, max_size=3),
    max_size=8,
)
linked_st = st.sets(st.sampled_from(OBJECTS), max_size=3)


def _facts(matches: dict[int, dict[str, int]], linked: set[str], statuses: dict[int, str]) -> Facts:
    users = {uid: _user(uid, status=statuses.get(uid, "active")) for uid in matches}
    return Facts(
        identity_matches=[
            IdentityMatch(obj, rank, users[uid])
            for uid, objs in sorted(matches.items())
            for obj, rank in sorted(objs.items())
        ],
        linked={obj: _user(100 + OBJECTS.index(obj), obj) for obj in linked},
    )


def _policy(merge_enabled: bool) -> Policy:
    return Policy(NOW, timedelta(hours=24), True, merge_enabled, "all", "untrack")


def _key(the_plan: Plan) -> list[tuple[str, int | None, str | None, tuple[int, ...]]]:
    return sorted(
        (a.kind.value, a.user_id, a.object_id, tuple(a.source_user_ids)) for a in the_plan.actions
    )


@settings(max_examples=300, deadline=None)
@given(
    matches_st,
    linked_st,
    st.dictionaries(st.integers(1, 8), st.sampled_from(["active", "pending"])),
    st.booleans(),
)
def test_linking_sure_pairs_first_changes_nothing_but_when(
    matches: dict[int, dict[str, int]], linked: set[str], statuses: dict[int, str], merge: bool
) -> None:
    policy = _policy(merge)
    before = plan(_facts(matches, linked, statuses), policy)
    claimants: dict[str, int] = defaultdict(int)
    for objs in matches.values():
        for obj in objs:
            claimants[obj] += 1
    # The store leaves linked objects out of the count of claimants (the link is refused).
    sure = sure_links(
        {uid: dict.fromkeys(objs, True) for uid, objs in matches.items()},
        {o: n for o, n in claimants.items() if o not in linked},
        set(matches),
    )
    planned_links = {(a.user_id, a.object_id) for a in before.actions if a.kind == ActionKind.LINK}
    assert set(sure.items()) <= planned_links
    # Link them, then plan again: the plan is the one before without those links.
    rest = {uid: objs for uid, objs in matches.items() if uid not in sure}
    facts = _facts(rest, linked, statuses)
    facts = replace(
        facts,
        linked={
            **facts.linked,
            **{obj: _user(uid, obj, statuses.get(uid, "active")) for uid, obj in sure.items()},
        },
    )
    after = plan(facts, policy)
    expected = [k for k in _key(before) if not (k[0] == "link" and (k[1], k[2]) in sure.items())]
    assert _key(after) == expected


def test_only_a_one_to_one_match_of_a_tracked_record_and_an_enabled_account_is_sure() -> None:
    matches = {
        1: {"a": True},
        2: {"b": True},
        3: {"b": True},
        4: {"c": True, "d": True},
        5: {"e": True},  # "e" is linked to a record already
        6: {"f": False},  # a disabled account
        7: {"g": True},  # an untracked record
        8: {"h": True, "i": False},  # a disabled account still counts as a match
    }
    claimants = {"a": 1, "b": 2, "c": 1, "d": 1, "f": 1, "g": 1, "h": 1, "i": 1}
    assert sure_links(matches, claimants, {1, 2, 3, 4, 5, 6, 8}) == {1: "a"}
