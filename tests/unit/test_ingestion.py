"""The ingestion resolver `plan_ingest` (pure: the store's knowledge comes in as Lookups)."""

from __future__ import annotations

import json
from typing import Any

from entrasync.domain.identity import IdentifierKind
from entrasync.domain.ingestion import KnownUser, Lookups, plan_ingest
from entrasync.domain.licensing import AccountTerms
from entrasync.domain.reports import AgentReport, parse_report

TERMS = AccountTerms(purchased=10, plan="paid", pending_mode=False, manual_review=False)

_line = 0


def rep(logon: str, device: str = "PC", events: int = 1, **ids: str) -> AgentReport:
    global _line
    _line += 1
    body: dict[str, Any] = {"device": device, "logon": logon, **ids}
    body["events"] = [
        {"start": "2026-06-01T09:00:00Z", "duration_s": 5, "app": "a"} for _ in range(events)
    ]
    return parse_report(_line, json.dumps(body))


def lookups(
    *,
    logons: dict[str, tuple[int, int]] | None = None,
    idents: dict[tuple[str, str], int] | None = None,
    users: dict[int, KnownUser] | None = None,
    history: set[int] | None = None,
    used: int = 0,
) -> Lookups:
    return Lookups(
        logon_agents=logons or {},
        identifier_users=idents or {},
        users=users or {},
        agents_with_history=frozenset(history or set()),
        used_licenses=used,
    )


def tracked() -> KnownUser:
    return KnownUser("tracked", "active")


def test_new_person_gets_a_user_an_agent_and_its_identifiers() -> None:
    plan = plan_ingest([rep("CONTOSO\\jdoe", upn="JDoe@contoso.com")], lookups(), TERMS)
    assert len(plan.new_users) == 1
    user = plan.new_users[0]
    assert user.status == "active"
    assert set(user.identifiers) == {("upn", "jdoe@contoso.com"), ("logon", "contoso\\jdoe")}
    assert [(a.user, a.logon) for a in plan.new_agents] == [(user.ref, "contoso\\jdoe")]
    assert [(a, u) for a, u, _ in plan.accepted] == [(plan.new_agents[0].ref, user.ref)]
    assert plan.dropped == []
    assert plan.learned == []


def test_same_logon_on_three_computers_is_one_agent() -> None:
    reports = [rep("CONTOSO\\jdoe", device=f"PC{i}", upn="jdoe@contoso.com") for i in range(3)]
    plan = plan_ingest(reports, lookups(), TERMS)
    assert len(plan.new_users) == 1
    assert len(plan.new_agents) == 1
    assert len({agent for agent, _, _ in plan.accepted}) == 1
    assert len(plan.accepted) == 3


def test_standalone_computers_are_one_user_with_two_agents() -> None:
    reports = [
        rep("LAPTOP1\\amy", device="LAPTOP1", email="amy@contoso.com"),
        rep("LAPTOP2\\amy", device="LAPTOP2", email="amy@contoso.com"),
    ]
    plan = plan_ingest(reports, lookups(), TERMS)
    assert len(plan.new_users) == 1
    assert sorted(a.logon for a in plan.new_agents) == ["laptop1\\amy", "laptop2\\amy"]
    assert {user for _, user, _ in plan.accepted} == {plan.new_users[0].ref}


def test_logon_is_matched_first_even_when_the_upn_belongs_to_someone_else() -> None:
    known = lookups(
        logons={"contoso\\jdoe": (100, 1)},
        idents={("upn", "other@contoso.com"): 2, ("logon", "contoso\\jdoe"): 1},
        users={1: tracked(), 2: tracked()},
        history={100},
    )
    plan = plan_ingest([rep("CONTOSO\\JDOE", upn="other@contoso.com")], known, TERMS)
    assert [(a, u) for a, u, _ in plan.accepted] == [(100, 1)]
    assert plan.new_users == [] and plan.new_agents == []
    # Never steals: user 2 keeps the upn, user 1 does not learn it.
    assert plan.learned == []


def test_logon_kept_as_identifier_matches_after_the_agent_is_gone() -> None:
    known = lookups(idents={("logon", "contoso\\jdoe"): 7}, users={7: tracked()})
    plan = plan_ingest([rep("CONTOSO\\jdoe")], known, TERMS)
    assert plan.new_users == []
    assert [(a.user, a.logon) for a in plan.new_agents] == [(7, "contoso\\jdoe")]


def test_upn_match_gives_a_new_agent_to_the_existing_user() -> None:
    known = lookups(idents={("upn", "jdoe@contoso.com"): 1}, users={1: tracked()})
    plan = plan_ingest([rep("NEWCO\\jdoe", upn="JDOE@contoso.com")], known, TERMS)
    assert plan.new_users == []
    assert [(a.user, a.logon) for a in plan.new_agents] == [(1, "newco\\jdoe")]
    assert plan.learned == [(1, ("logon", "newco\\jdoe"))]


def test_upn_field_also_matches_an_email_identifier() -> None:
    known = lookups(idents={("email", "jdoe@contoso.com"): 3}, users={3: tracked()})
    plan = plan_ingest([rep("X\\jdoe", upn="jdoe@contoso.com")], known, TERMS)
    assert plan.new_agents[0].user == 3


def test_email_then_employee_id() -> None:
    known = lookups(
        idents={("email", "j@contoso.com"): 4, ("employee_id", "e1"): 5},
        users={4: tracked(), 5: tracked()},
    )
    by_email = plan_ingest([rep("X\\a", email="j@contoso.com", employee_id="E1")], known, TERMS)
    assert by_email.new_agents[0].user == 4
    by_employee = plan_ingest([rep("X\\b", employee_id="E1")], known, TERMS)
    assert by_employee.new_agents[0].user == 5


def test_upn_wins_over_email_and_employee_id() -> None:
    known = lookups(
        idents={("upn", "u@c.com"): 1, ("email", "e@c.com"): 2, ("employee_id", "9"): 3},
        users={1: tracked(), 2: tracked(), 3: tracked()},
    )
    plan = plan_ingest([rep("X\\u", upn="u@c.com", email="e@c.com", employee_id="9")], known, TERMS)
    assert plan.new_agents[0].user == 1
    assert plan.learned == [(1, ("logon", "x\\u"))]  # e@c.com and 9 stay with 2 and 3


def test_unowned_identifiers_are_learned_by_the_matched_user() -> None:
    known = lookups(logons={"x\\u": (10, 1)}, idents={("logon", "x\\u"): 1}, users={1: tracked()})
    plan = plan_ingest([rep("X\\u", email="New@c.com", employee_id="77")], known, TERMS)
    assert sorted(plan.learned) == [(1, ("email", "new@c.com")), (1, ("employee_id", "77"))]


def test_identifier_is_learned_once_within_a_file() -> None:
    reports = [rep("X\\u", email="a@c.com"), rep("X\\u", email="a@c.com")]
    known = lookups(logons={"x\\u": (10, 1)}, idents={("logon", "x\\u"): 1}, users={1: tracked()})
    plan = plan_ingest(reports, known, TERMS)
    assert plan.learned == [(1, ("email", "a@c.com"))]


def test_new_user_does_not_steal_an_identifier_owned_by_another_user() -> None:
    # Matching goes by upn first: the report's upn is new, its employee id belongs to user 5.
    known = lookups(idents={("employee_id", "e1"): 5}, users={5: tracked()})
    plan = plan_ingest([rep("X\\new", upn="new@c.com", employee_id="e1")], known, TERMS)
    # employee_id matched user 5 (no upn match), so no new user; upn learned by 5.
    assert plan.new_users == []
    assert (5, ("upn", "new@c.com")) in plan.learned
    # A logon-matched report with someone else's employee id does not take it.
    known = lookups(
        logons={"x\\me": (10, 1)},
        idents={("employee_id", "e1"): 5, ("logon", "x\\me"): 1},
        users={1: tracked(), 5: tracked()},
    )
    plan = plan_ingest([rep("X\\me", employee_id="e1")], known, TERMS)
    assert plan.learned == []
    assert plan.accepted[0][1] == 1


def test_untracked_users_reports_are_dropped() -> None:
    known = lookups(
        logons={"x\\gone": (10, 1)},
        idents={("upn", "quiet@c.com"): 2},
        users={1: KnownUser("untracked", "active"), 2: KnownUser("untracked", "active")},
    )
    plan = plan_ingest([rep("X\\gone"), rep("Y\\quiet", upn="quiet@c.com")], known, TERMS)
    assert len(plan.dropped) == 2
    assert plan.accepted == []
    assert plan.new_agents == []  # no agent is created for an untracked user
    assert plan.new_users == []


def test_history_counts_toward_usage_once_per_agent() -> None:
    terms = AccountTerms(purchased=1, plan="paid", pending_mode=True, manual_review=False)
    reports = [rep("A\\one"), rep("A\\one"), rep("B\\two")]
    plan = plan_ingest(reports, lookups(), terms)
    assert [u.status for u in plan.new_users] == ["active", "pending"]
    assert len(plan.pending_users) == 1


def test_pending_mode_routes_the_user_who_would_go_over() -> None:
    terms = AccountTerms(purchased=2, plan="paid", pending_mode=True, manual_review=False)
    plan = plan_ingest([rep("A\\x"), rep("A\\y")], lookups(used=1), terms)
    assert [u.status for u in plan.new_users] == ["active", "pending"]


def test_pending_users_do_not_consume_so_the_next_one_also_waits() -> None:
    terms = AccountTerms(purchased=1, plan="paid", pending_mode=True, manual_review=False)
    plan = plan_ingest([rep("A\\x"), rep("A\\y"), rep("A\\z")], lookups(used=1), terms)
    assert [u.status for u in plan.new_users] == ["pending", "pending", "pending"]


def test_manual_review_routes_every_new_user() -> None:
    terms = AccountTerms(purchased=100, plan="paid", pending_mode=True, manual_review=True)
    plan = plan_ingest([rep("A\\x"), rep("A\\y")], lookups(), terms)
    assert [u.status for u in plan.new_users] == ["pending", "pending"]
    # Existing users are not re-routed.
    known = lookups(logons={"a\\x": (1, 1)}, users={1: tracked()}, history={1})
    assert plan_ingest([rep("A\\x")], known, terms).new_users == []


def test_without_pending_mode_everyone_is_active() -> None:
    plan = plan_ingest([rep(f"A\\u{i}") for i in range(15)], lookups(used=10), TERMS)
    assert {u.status for u in plan.new_users} == {"active"}


def test_report_without_events_creates_no_pending_user() -> None:
    terms = AccountTerms(purchased=0, plan="paid", pending_mode=True, manual_review=False)
    plan = plan_ingest([rep("A\\x", events=0)], lookups(), terms)
    assert [u.status for u in plan.new_users] == ["active"]


def test_identifier_kinds_are_plain_strings_in_the_plan() -> None:
    plan = plan_ingest([rep("A\\x", upn="u@c.com")], lookups(), TERMS)
    kinds = {kind for kind, _ in plan.new_users[0].identifiers}
    assert kinds == {IdentifierKind.UPN.value, IdentifierKind.LOGON.value}
    assert all(type(kind) is str for kind in kinds)
