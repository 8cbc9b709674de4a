"""The pure planner: facts in, actions out (no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from entrasync.domain.actions import ActionKind
from entrasync.domain.entra import EntraUser
from entrasync.domain.evidence import MergeMaps, identity_keys, logon_of
from entrasync.domain.groups import GroupKind
from entrasync.domain.planning import (
    Facts,
    IdentityMatch,
    Policy,
    StoreUser,
    WatchedMember,
    plan,
)

NOW = datetime(2026, 6, 2, tzinfo=UTC)


def policy(**kw: object) -> Policy:
    base: dict[str, object] = {
        "now": NOW,
        "purge_delay": timedelta(hours=24),
        "retrack_on_removal": True,
        "merge_enabled": True,
        "agent_merge": "all",
        "on_user_deleted": "ignore",
    }
    base.update(kw)
    return Policy(**base)  # type: ignore[arg-type]


def user(uid: int, **kw: object) -> StoreUser:
    base: dict[str, object] = {
        "id": uid,
        "entra_object_id": None,
        "tracking": "tracked",
        "untracked_by": None,
        "status": "active",
        "agents": 1,
        "licenses": 1,
        "last_activity_at": NOW - timedelta(days=uid),
    }
    base.update(kw)
    return StoreUser(**base)  # type: ignore[arg-type]


def test_no_facts_no_actions() -> None:
    result = plan(Facts(), policy())
    assert result.actions == [] and result.scheduled == []


def test_delete_wins_over_dnt_and_purge_waits_for_the_delay() -> None:
    u = user(1, entra_object_id="o1", licenses=2)
    watched = [
        WatchedMember("o1", GroupKind.DNT, "g-dnt", NOW - timedelta(hours=48), u),
        WatchedMember("o1", GroupKind.DELETE, "g-del", NOW - timedelta(hours=2), u),
    ]
    result = plan(Facts(watched=watched), policy())
    assert [a.kind for a in result.actions] == [ActionKind.UNTRACK, ActionKind.SCHEDULE_PURGE]
    assert "Delete group g-del" in result.actions[0].reason
    assert result.actions[1].due_at == NOW + timedelta(hours=22)
    assert [(s.user_id, s.due_at, s.licenses) for s in result.scheduled] == [
        (1, NOW + timedelta(hours=22), 2)
    ]
    due = plan(Facts(watched=watched), policy(purge_delay=timedelta(hours=1)))
    assert [a.kind for a in due.actions] == [ActionKind.UNTRACK, ActionKind.PURGE]
    assert due.actions[1].licenses_freed == 2


def test_unknown_member_is_preregistered() -> None:
    result = plan(Facts(watched=[WatchedMember("o9", GroupKind.DNT, "g", NOW, None)]), policy())
    assert [(a.kind, a.object_id) for a in result.actions] == [(ActionKind.PREREGISTER, "o9")]


def test_retrack_only_when_enabled() -> None:
    gone = user(3, entra_object_id="o3", tracking="untracked", untracked_by="entrasync")
    assert [a.kind for a in plan(Facts(retrack=[gone]), policy()).actions] == [ActionKind.RETRACK]
    assert plan(Facts(retrack=[gone]), policy(retrack_on_removal=False)).actions == []


def test_merge_survivor_is_the_linked_record_and_frees_licenses() -> None:
    linked = user(1, entra_object_id="o1", last_activity_at=NOW - timedelta(days=30))
    dup = user(2)
    facts = Facts(identity_matches=[IdentityMatch("o1", 2, dup)], linked={"o1": linked})
    (action,) = plan(facts, policy()).actions
    assert action.kind == ActionKind.MERGE
    assert (action.user_id, action.source_user_ids, action.licenses_freed) == (1, (2,), 1)
    assert "proxyAddresses" in action.reason
    kept_apart = plan(facts, policy(agent_merge="none")).actions[0]
    assert kept_apart.licenses_freed == 0


def test_unlinked_duplicates_survivor_is_active_then_most_recent() -> None:
    old = user(5, last_activity_at=NOW - timedelta(days=9))
    recent = user(6, last_activity_at=NOW - timedelta(days=1))
    pending = user(7, status="pending", licenses=0, last_activity_at=NOW)
    matches = [IdentityMatch("o", 1, u) for u in (old, recent, pending)]
    (action,) = plan(Facts(identity_matches=matches), policy()).actions
    assert action.user_id == 6 and set(action.source_user_ids) == {5, 7}


def test_records_of_other_entra_objects_are_never_merged() -> None:
    other = user(1, entra_object_id="someone-else")
    fresh = user(2)
    facts = Facts(identity_matches=[IdentityMatch("o1", 1, other), IdentityMatch("o1", 1, fresh)])
    result = plan(facts, policy())
    assert [(a.kind, a.user_id) for a in result.actions] == [(ActionKind.LINK, 2)]


def test_a_record_matching_two_objects_equally_is_skipped() -> None:
    u = user(4)
    facts = Facts(identity_matches=[IdentityMatch("a", 3, u), IdentityMatch("b", 3, u)])
    (action,) = plan(facts, policy()).actions
    assert action.kind == ActionKind.MERGE_SKIPPED and "several Entra objects" in action.reason


def test_merge_disabled_links_only() -> None:
    facts = Facts(identity_matches=[IdentityMatch("o", 1, user(1)), IdentityMatch("o", 1, user(2))])
    result = plan(facts, policy(merge_enabled=False))
    assert [a.kind for a in result.actions] == [ActionKind.LINK]


def test_deleted_user_untracked_and_purged_after_delay() -> None:
    u = user(8, entra_object_id="o8")
    facts = Facts(deleted=[("o8", NOW - timedelta(hours=1), u)])
    assert plan(facts, policy()).actions == []  # ignore is the default
    soon = plan(facts, policy(on_user_deleted="purge"))
    assert [a.kind for a in soon.actions] == [ActionKind.UNTRACK, ActionKind.SCHEDULE_PURGE]
    assert len(soon.scheduled) == 1
    late = plan(facts, policy(on_user_deleted="purge", purge_delay=timedelta(0)))
    assert [a.kind for a in late.actions] == [ActionKind.UNTRACK, ActionKind.PURGE]
    assert late.actions[0].untracked_by == "entra-deleted"


def test_identity_keys_ranks_and_maps() -> None:
    entra = EntraUser(
        id="o",
        user_principal_name="Ann@NewCo.com",
        mail="ann@newco.com",
        proxy_addresses=("SMTP:ann@newco.com", "smtp:ann.b@oldco.com", "X500:/o=x"),
        on_premises_sam_account_name="ann",
        on_premises_domain_name="newco.local",
        employee_id="77",
    )
    maps = MergeMaps({"oldco.com": "newco.com"}, {"OLDCO": "NEWCO"})
    keys = {(k.kind, k.value): k.rank for k in identity_keys(entra, ["ann@corp.com"], maps)}
    assert keys[("upn", "ann@newco.com")] == 1 and keys[("email", "ann@corp.com")] == 1
    assert keys[("email", "ann.b@oldco.com")] == 2
    assert keys[("upn", "ann@oldco.com")] == 3  # domain_map translation of the UPN
    assert keys[("logon", "newco\\ann")] == 2 and keys[("logon", "oldco\\ann")] == 3
    assert keys[("employee_id", "77")] == 2
    assert not any("x500" in v for _, v in keys)
    assert logon_of(EntraUser(id="x")) is None
