"""What an admin lives through on a real tenant (docs/safety.md), one test per story.

Time passing (the purge delay) is simulated by moving the store's clocks back: the
membership's `first_seen_at` and a scheduled purge's due time."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from syncworld import World
from testkit import report

from entrasync.errors import ExitCode
from entrasync.store.schema import EntraUserRow, ScheduledPurgeRow, WatchedMemberRow

_files = itertools.count()


def ingest(es: Any, world: World, *lines: str) -> None:
    path = world.config_path.parent / f"reports-{next(_files)}.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = es("ingest", str(path))
    assert result.code == 0, result.err


def actions(es: Any, name: str | None = None) -> list[dict[str, Any]]:
    args = ["audit", "list", "--json"] + (["--action", name] if name else [])
    result = es(*args)
    assert result.code == 0, result.err
    records: list[dict[str, Any]] = result.json()
    return records


def user(es: Any, ident: str) -> dict[str, Any]:
    result = es("users", "show", ident, "--json")
    assert result.code == 0, result.err
    view: dict[str, Any] = result.json()
    return view


def rows(view: dict[str, Any]) -> int:
    return sum(a["activity_rows"] for a in view["agents"])


def time_passes(world: World, hours: float) -> None:
    """Move the store's clocks `hours` into the past (as if that much time went by)."""
    shift = timedelta(hours=hours)
    with world.store.transaction() as s:
        for member in s.scalars(select(WatchedMemberRow)):
            member.first_seen_at -= shift
        for purge in s.scalars(select(ScheduledPurgeRow)):
            purge.due_at -= shift
        for entra in s.scalars(select(EntraUserRow).where(EntraUserRow.deleted_at.is_not(None))):
            entra.deleted_at = (entra.deleted_at or entra.updated_at) - shift


def configure(world: World, old: str, new: str) -> None:
    text = world.config_path.read_text()
    assert old in text
    world.config_path.write_text(text.replace(old, new))


def verified(es: Any) -> None:
    result = es("audit", "verify")
    assert result.code == 0, result.out + result.err


def test_cancel_a_purge_by_removing_the_last_member(world: World, es: Any) -> None:
    t = world.tenant
    ann = t.add_user("ann@contoso.com")
    ingest(es, world, report("CONTOSO\\ann", "PC", upn="ann@contoso.com", events=4))
    t.add_member(world.delete, ann)  # the group's only member
    first = es("sync")
    assert first.code == 0, first.out
    (scheduled,) = actions(es, "purge.scheduled")
    assert "Delete" in scheduled["reason"] and "'Delete'" in scheduled["reason"]
    assert user(es, "ann@contoso.com")["tracking"] == "untracked"

    t.remove_member(world.delete, ann)  # the admin changes their mind: the group is now empty
    second = es("sync")
    assert second.code == 0, second.out
    (cancelled,) = actions(es, "purge.cancelled")
    assert cancelled["user_id"] == scheduled["user_id"]
    assert "no longer a member" in cancelled["reason"]
    time_passes(world, 48)
    third = es("sync")
    assert third.code == 0
    assert actions(es, "user.purged") == []
    view = user(es, "ann@contoso.com")
    assert rows(view) == 4 and view["tracking"] == "tracked"  # untracked by the membership only
    groups = es("groups", "list", "--json").json()
    assert {g["state"] for g in groups} == {"ok"}
    verified(es)


def _delete_group_with_members(world: World, es: Any) -> list[str]:
    t = world.tenant
    ids = [t.add_user(f"d{i}@contoso.com") for i in range(2)]
    ingest(es, world, *(report(f"CONTOSO\\d{i}", "PC", upn=f"d{i}@contoso.com") for i in range(2)))
    t.add_members(world.delete, ids)
    assert es("sync").code == 0
    assert len(actions(es, "purge.scheduled")) == 2
    return ids


def test_a_delete_group_deleted_by_mistake_purges_nobody(world: World, es: Any) -> None:
    t = world.tenant
    _delete_group_with_members(world, es)
    leaver = t.add_user("leaver@contoso.com")
    ingest(es, world, report("CONTOSO\\leaver", "PC", upn="leaver@contoso.com"))
    t.add_member(world.dnt, leaver)
    assert es("sync").code == 0

    t.delete_group(world.delete)
    t.remove_member(world.dnt, leaver)  # a healthy group keeps working meanwhile
    held = es("sync")
    assert held.code == ExitCode.HELD, held.out
    assert "SUSPECT" in held.out and f"groups accept {world.delete}" in held.out
    (suspect,) = actions(es, "group.suspect")
    assert "reported deleted" in suspect["reason"]
    assert user(es, "leaver@contoso.com")["tracking"] == "tracked"
    status = es("status", "--json").json()
    assert [g["id"] for g in status["suspect_groups"]] == [world.delete]
    assert status["last_run"]["status"] == "held"

    time_passes(world, 72)  # long past the purge delay, group still deleted
    again = es("sync", "--json")
    assert again.code == ExitCode.HELD
    body = again.json()
    assert world.delete in body["suspect_groups"]
    assert actions(es, "user.purged") == [] and actions(es, "purge.cancelled") == []
    planned = es("plan", "--json").json()
    assert len(planned["suspended_purges"]) == 2
    for i in range(2):
        view = user(es, f"d{i}@contoso.com")
        assert view["tracking"] == "untracked" and rows(view) == 1
    assert len(actions(es, "group.suspect")) == 1  # one record (and one email) per episode
    listed = {g["id"]: g for g in es("groups", "list", "--json").json()}
    assert listed[world.delete]["state"] == "suspect" and listed[world.delete]["members"] == 2

    t.restore_group(world.delete)  # the admin restores it from the recycle bin
    healed = es("sync")
    assert healed.code == 0, healed.out
    assert len(actions(es, "group.recovered")) == 1
    assert len(actions(es, "user.purged")) == 2  # the original intent, confirmed with Graph
    verified(es)


def test_accepting_a_deleted_group_cancels_its_purges(world: World, es: Any) -> None:
    _delete_group_with_members(world, es)
    world.tenant.delete_group(world.delete)
    assert es("sync").code == ExitCode.HELD
    accepted = es("groups", "accept", world.delete, "--actor", "jane")
    assert accepted.code == 0, accepted.err
    (record,) = actions(es, "group.accepted")
    assert record["actor"] == "admin:jane"
    # the deleted group's two members leave its watched rows (counted on both stores)
    assert (record["details"]["members_removed"], record["details"]["members_added"]) == (2, 0)
    after = es("sync")
    assert after.code == 0, after.out
    assert len(actions(es, "purge.cancelled")) == 2
    assert len(actions(es, "user.tracked")) == 2  # they were untracked only by that group
    assert actions(es, "user.purged") == []
    assert es("sync").code == 0  # the accepted state holds: no new suspicion
    verified(es)


def test_a_full_read_that_finds_a_group_empty_is_suspect(world: World, es: Any) -> None:
    t = world.tenant
    ids = [t.add_user(f"n{i}@contoso.com") for i in range(3)]
    ingest(es, world, *(report(f"CONTOSO\\n{i}", "PC", upn=f"n{i}@contoso.com") for i in range(3)))
    t.add_members(world.dnt, ids)
    assert es("sync").code == 0
    with t.lock:  # an inconsistent replica: the group reads empty, no removals reported
        t.groups[world.dnt].members.clear()
        t.groups[world.dnt].version += 1
    t.expire_delta_tokens()  # the next round is a full one (410 / syncStateNotFound)
    held = es("sync")
    assert held.code == ExitCode.HELD, held.out
    assert "read empty in a full read" in actions(es, "group.suspect")[0]["reason"]
    assert actions(es, "user.tracked") == []
    assert all(user(es, f"n{i}@contoso.com")["tracking"] == "untracked" for i in range(3))
    verified(es)


def test_upn_reuse_gives_the_new_hire_their_own_record(world: World, es: Any) -> None:
    t = world.tenant
    old = t.add_user("sam@contoso.com")
    ingest(es, world, report("CONTOSO\\sam", "PC-1", upn="sam@contoso.com", events=5))
    assert es("sync").code == 0
    t.delete_user(old)  # leaves; the account sits in the recycle bin
    assert es("sync").code == 0
    hire = t.add_user("sam@contoso.com")  # a new person gets the same UPN
    ingest(es, world, report("CONTOSO\\sam.new", "PC-9", upn="sam@contoso.com", events=2))
    departed = user(es, "contoso\\sam")
    newcomer = user(es, "contoso\\sam.new")
    assert departed["id"] != newcomer["id"]
    assert rows(departed) == 5 and rows(newcomer) == 2
    assert [i["value"] for i in departed["retired_identifiers"]] == ["sam@contoso.com"]
    assert len(actions(es, "identifier.retired")) == 1
    assert es("sync").code == 0
    assert user(es, "sam@contoso.com")["entra_object_id"] == hire
    assert user(es, "contoso\\sam")["entra_object_id"] == old
    assert actions(es, "user.merged") == []
    verified(es)


def test_a_restored_account_reporting_from_its_old_logon_is_the_same_person(
    world: World, es: Any
) -> None:
    t = world.tenant
    kim = t.add_user("kim@contoso.com")
    ingest(es, world, report("CONTOSO\\kim", "PC", upn="kim@contoso.com"))
    assert es("sync").code == 0
    t.delete_user(kim)
    assert es("sync").code == 0
    t.restore_user(kim)
    ingest(
        es, world, report("CONTOSO\\kim", "PC", upn="kim@contoso.com", start="2026-06-02T09:00:00Z")
    )
    view = user(es, "kim@contoso.com")
    assert rows(view) == 2 and view["retired_identifiers"] == []
    assert actions(es, "identifier.retired") == []


def test_a_deleted_account_leaving_dnt_is_not_tracked_again(world: World, es: Any) -> None:
    t = world.tenant
    lee = t.add_user("lee@contoso.com")
    ingest(es, world, report("CONTOSO\\lee", "PC", upn="lee@contoso.com"))
    t.add_member(world.dnt, lee)
    assert es("sync").code == 0
    t.delete_user(lee)  # Entra drops a deleted account from every group
    assert es("sync").code == 0
    assert user(es, "lee@contoso.com")["tracking"] == "untracked"
    assert actions(es, "user.tracked") == []


def test_a_purged_delete_member_leaving_the_group_stays_untracked(world: World, es: Any) -> None:
    configure(world, 'purge_delay = "24h"', 'purge_delay = "0s"')
    t = world.tenant
    max_ = t.add_user("max@contoso.com")
    ingest(es, world, report("CONTOSO\\max", "PC", upn="max@contoso.com", events=3))
    t.add_member(world.delete, max_)
    assert es("sync").code == 0
    assert len(actions(es, "user.purged")) == 1
    t.remove_member(world.delete, max_)
    assert es("sync").code == 0
    view = user(es, "max@contoso.com")
    assert view["tracking"] == "untracked" and view["purged_at"] is not None
    assert actions(es, "user.tracked") == []
    verified(es)


def test_an_admin_untracked_user_passing_through_dnt_stays_untracked(world: World, es: Any) -> None:
    t = world.tenant
    pat = t.add_user("pat@contoso.com")
    ingest(es, world, report("CONTOSO\\pat", "PC", upn="pat@contoso.com"))
    assert es("users", "untrack", "pat@contoso.com").code == 0
    t.add_member(world.dnt, pat)
    assert es("sync").code == 0
    t.remove_member(world.dnt, pat)
    assert es("sync").code == 0
    assert user(es, "pat@contoso.com")["tracking"] == "untracked"
    assert actions(es, "user.tracked") == []


def test_a_restore_graph_did_not_report_stops_the_purge(world: World, es: Any) -> None:
    configure(world, "# extra\n", '# extra\n[sync]\non_user_deleted = "purge"\n')
    t = world.tenant
    t.report_restores = False
    rey = t.add_user("rey@contoso.com")
    ingest(es, world, report("CONTOSO\\rey", "PC", upn="rey@contoso.com", events=2))
    assert es("sync").code == 0
    t.delete_user(rey)
    assert es("sync").code == 0
    assert len(actions(es, "purge.scheduled")) == 1
    t.restore_user(rey)  # the delta rounds never say so
    time_passes(world, 48)
    result = es("sync", "--json")
    assert result.code == 0, result.out
    (unconfirmed,) = actions(es, "purge.unconfirmed")
    assert "the account exists" in unconfirmed["reason"]
    assert rows(user(es, "rey@contoso.com")) == 2
    assert actions(es, "user.purged") == []
    verified(es)


def test_throttled_confirmation_runs_no_purge(world: World, es: Any) -> None:
    configure(world, 'purge_delay = "24h"', 'purge_delay = "0s"')
    t = world.tenant
    zoe = t.add_user("zoe@contoso.com")
    ingest(es, world, report("CONTOSO\\zoe", "PC", upn="zoe@contoso.com"))
    t.add_member(world.delete, zoe)
    world.emu.faults.add(r"checkMemberGroups", status=429, retry_after="0", times=None)
    result = es("sync")
    assert result.code == 0, result.out
    assert len(actions(es, "purge.unconfirmed")) == 1
    assert rows(user(es, "zoe@contoso.com")) == 1
    world.emu.faults.clear()
    assert es("sync").code == 0
    assert len(actions(es, "user.purged")) == 1
    verified(es)


def test_mass_add_over_max_purges_then_approve_after_some_left(world: World, es: Any) -> None:
    configure(world, 'purge_delay = "24h"', 'purge_delay = "0s"')
    configure(world, "max_purges = 50", 'max_purges = "5%"')
    configure(world, "max_untracks = 50", "max_untracks = 1000")
    t = world.tenant
    people = [t.add_user(f"m{i}@contoso.com") for i in range(500)]
    ingest(
        es, world, *(report(f"CONTOSO\\m{i}", "PC", upn=f"m{i}@contoso.com") for i in range(500))
    )
    t.add_members(world.delete, people)
    held = es("sync", "--json")
    assert held.code == ExitCode.HELD
    assert held.json()["held"] == {"purge": 500}
    assert actions(es, "user.purged") == []
    run_id = es("status", "--json").json()["last_run"]["id"]
    for person in people[:10]:
        t.remove_member(world.delete, person)  # they were added by mistake
    approved = es("approve", run_id, "--actor", "jane", "--json")
    assert approved.code == 0, approved.err
    purged = actions(es, "user.purged")
    assert len(purged) == 490 and {r["actor"] for r in purged} == {"admin:jane"}
    assert rows(user(es, "m0@contoso.com")) == 1
    (released,) = actions(es, "action.released")
    assert released["details"] == {"run": run_id, "released": 490, "obsolete": 10}
    verified(es)


def test_ambiguous_proxy_addresses_merge_nobody(world: World, es: Any) -> None:
    t = world.tenant
    t.add_user(
        "a.one@contoso.com", proxy_addresses=["SMTP:a.one@contoso.com", "smtp:a@contoso.com"]
    )
    t.add_user(
        "a.two@contoso.com", proxy_addresses=["SMTP:a.two@contoso.com", "smtp:a@contoso.com"]
    )
    ingest(es, world, report("CONTOSO\\a", "PC", email="a@contoso.com"))
    result = es("sync")
    assert result.code == 0
    assert len(actions(es, "merge.skipped")) == 1
    assert user(es, "a@contoso.com")["entra_object_id"] is None
    assert actions(es, "user.merged") == []
