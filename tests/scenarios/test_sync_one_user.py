"""`entrasync sync --user IDENT`: the on-demand sync of one person (docs/sync.md, "Syncing one
person now"), as an admin lives through it. The CLI against the emulator, on SQLite and
PostgreSQL, asserting the store, the audit records and the exit code; each story ends with a
normal cycle that neither redoes nor undoes what `sync --user` did."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from syncworld import World
from test_safety_stories import actions, configure, ingest, rows, time_passes, user, verified
from testkit import report

from entrasync.errors import ExitCode
from entrasync.store.schema import EntraMemberRow, RunRow, WatchedMemberRow


def _people(world: World, es: Any, *names: str) -> dict[str, str]:
    """Entra users with one agent each, synced once (linked, tracked)."""
    ids = {n: world.tenant.add_user(f"{n}@contoso.com") for n in names}
    ingest(
        es,
        world,
        *(report(f"CONTOSO\\{n}", "PC", upn=f"{n}@contoso.com", events=2) for n in names),
    )
    first = es("sync")
    assert first.code == 0, first.out + first.err
    return ids


def _run_kinds(world: World) -> list[str]:
    with world.store.reading() as session:
        return [r.kind for r in session.scalars(select(RunRow).order_by(RunRow.started_at))]


def _new(es: Any, mark: int) -> list[str]:
    """The audit actions written since the log held `mark` records."""
    return [a["action"] for a in actions(es)[mark:]]


def _used(es: Any) -> int:
    used: int = es("status", "--json").json()["licenses"]["used"]
    return used


def test_a_privacy_request_now_touches_that_person_only(world: World, es: Any) -> None:
    ids = _people(world, es, "ann", "bob", "carl")
    t = world.tenant
    t.add_member(world.dnt, ids["ann"])  # the privacy request
    t.add_member(world.dnt, ids["bob"])  # other changes in Entra meanwhile
    t.rename_upn(ids["carl"], "carl@newco.com")
    mark = len(actions(es))

    done = es("sync", "--user", "ann@contoso.com")
    assert done.code == 0, done.out + done.err
    assert "member of Do Not Track group 'Do Not Track'" in done.out
    (untracked,) = actions(es, "user.untracked")
    assert untracked["user_id"] == user(es, "ann@contoso.com")["id"]
    assert "'Do Not Track'" in untracked["reason"] and world.dnt in untracked["reason"]
    assert untracked["entra_object_id"] == ids["ann"]
    run = es("status", "--json").json()["last_run"]
    assert run["id"] == untracked["run_id"] and run["kind"] == "sync-user"
    assert run["status"] == "ok"
    assert user(es, "ann@contoso.com")["tracking"] == "untracked"
    assert rows(user(es, "ann@contoso.com")) == 2  # DNT keeps the history
    assert user(es, "bob@contoso.com")["tracking"] == "tracked"  # nobody else touched
    assert _new(es, mark) == ["user.untracked"]

    again = es("sync")  # the next cycle does the rest, and nothing twice
    assert again.code == 0, again.out + again.err
    records = actions(es, "user.untracked")
    assert [r["user_id"] for r in records] == [
        untracked["user_id"],
        user(es, "bob@contoso.com")["id"],
    ]
    assert actions(es, "user.tracked") == []
    assert _run_kinds(world) == ["sync", "sync-user", "sync"]
    verified(es)


def test_a_delete_member_is_untracked_now_and_purged_after_the_delay(world: World, es: Any) -> None:
    ids = _people(world, es, "ann", "bob")
    world.tenant.add_member(world.delete, ids["ann"])
    first = es("sync", "--user", "ann@contoso.com", "--json")
    assert first.code == 0, first.out + first.err
    body = first.json()
    assert body["kind"] == "sync-user" and body["user"]["entra_object_id"] == ids["ann"]
    assert [m["kind"] for m in body["memberships"]] == ["delete"]
    (scheduled,) = body["scheduled_purges"]
    assert scheduled["group_id"] == world.delete
    assert user(es, "ann@contoso.com")["tracking"] == "untracked"
    (record,) = actions(es, "purge.scheduled")
    assert "'Delete'" in record["reason"] and "24h" in record["reason"]
    assert rows(user(es, "ann@contoso.com")) == 2  # not purged early
    assert es("sync").code == 0  # the cycle agrees: same due time, nothing new
    assert len(actions(es, "purge.scheduled")) == 1 and actions(es, "user.purged") == []
    assert es("sync", "--user", "ann@contoso.com").code == 0  # asking again: still waiting
    assert actions(es, "user.purged") == []

    time_passes(world, 25)  # the delay ran from the first sighting
    before = _used(es)
    due = es("sync", "--user", ids["ann"])  # by Entra object id
    assert due.code == 0, due.out + due.err
    (purged,) = actions(es, "user.purged")
    assert purged["user_id"] == record["user_id"] and "purge delay 24h passed" in purged["reason"]
    assert rows(user(es, "ann@contoso.com")) == 0
    assert _used(es) == before - 1
    assert user(es, "bob@contoso.com")["tracking"] == "tracked"
    assert es("sync").code == 0
    assert len(actions(es, "user.purged")) == 1
    verified(es)


def test_with_no_purge_delay_the_history_goes_at_once(world: World, es: Any) -> None:
    configure(world, 'purge_delay = "24h"', 'purge_delay = "0s"')
    ids = _people(world, es, "ann", "bob")
    before = _used(es)
    world.tenant.add_member(world.delete, ids["ann"])
    done = es("sync", "--user", "CONTOSO\\ann")  # by logon
    assert done.code == 0, done.out + done.err
    (purged,) = actions(es, "user.purged")
    assert purged["details"]["licenses_freed"] == 1
    view = user(es, "ann@contoso.com")
    assert view["tracking"] == "untracked" and rows(view) == 0 and view["licenses"] == 0
    assert _used(es) == before - 1
    assert rows(user(es, "bob@contoso.com")) == 2
    assert es("sync").code == 0
    assert len(actions(es, "user.purged")) == 1
    verified(es)


def test_leaving_the_dnt_group_tracks_again_and_the_cycle_agrees(world: World, es: Any) -> None:
    ids = _people(world, es, "ann", "bob")
    t = world.tenant
    t.add_member(world.dnt, ids["ann"])
    assert es("sync").code == 0
    assert user(es, "ann@contoso.com")["tracking"] == "untracked"
    t.remove_member(world.dnt, ids["ann"])
    t.add_member(world.dnt, ids["bob"])

    done = es("sync", "--user", "ann@contoso.com")
    assert done.code == 0, done.out + done.err
    (tracked,) = actions(es, "user.tracked")
    assert "no longer in a Do Not Track or Delete group" in tracked["reason"]
    assert user(es, "ann@contoso.com")["tracking"] == "tracked"
    assert user(es, "bob@contoso.com")["tracking"] == "tracked"
    assert es("sync").code == 0  # bob now; ann is not untracked again
    assert [r["user_id"] for r in actions(es, "user.untracked")] == [
        user(es, "ann@contoso.com")["id"],
        user(es, "bob@contoso.com")["id"],
    ]
    assert len(actions(es, "user.tracked")) == 1
    verified(es)


def test_without_retrack_on_removal_they_stay_untracked(world: World, es: Any) -> None:
    configure(world, "# extra\n", "# extra\nretrack_on_removal = false\n")
    ids = _people(world, es, "ann")
    world.tenant.add_member(world.dnt, ids["ann"])
    assert es("sync", "--user", "ann@contoso.com").code == 0
    world.tenant.remove_member(world.dnt, ids["ann"])
    done = es("sync", "--user", "ann@contoso.com")
    assert done.code == 0, done.out + done.err
    assert "in no watched group" in done.out
    assert user(es, "ann@contoso.com")["tracking"] == "untracked"
    assert actions(es, "user.tracked") == []


def test_a_upn_rename_is_merged_as_the_cycle_would(world: World, es: Any) -> None:
    ids = _people(world, es, "ann", "bob")
    world.tenant.rename_upn(ids["ann"], "ann@newco.com")
    # The agent reports the new UPN from a new logon: a second record, a second license.
    ingest(es, world, report("NEWCO\\ann", "PC2", upn="ann@newco.com"))
    old_id, new_id = user(es, "ann@contoso.com")["id"], user(es, "ann@newco.com")["id"]
    assert new_id != old_id
    before = _used(es)

    done = es("sync", "--user", "ann@newco.com")
    assert done.code == 0, done.out + done.err
    (merged,) = actions(es, "user.merged")
    assert merged["user_id"] == new_id  # folded into the record linked to the Entra user
    assert "same person in Entra" in merged["reason"]
    view = user(es, "ann@newco.com")
    assert view["id"] == old_id and view["licenses"] == 1
    assert _used(es) == before - 1
    assert es("sync").code == 0
    assert len(actions(es, "user.merged")) == 1
    verified(es)


def test_a_user_entra_does_not_know_changes_nothing(world: World, es: Any) -> None:
    configure(world, "# extra\n", '# extra\n[sync]\non_user_deleted = "untrack"\n')
    ids = _people(world, es, "ann")
    mark = len(actions(es))
    unknown = es("sync", "--user", "nobody@contoso.com")
    assert unknown.code == ExitCode.FAILURE
    assert "nobody@contoso.com" in unknown.err and "not in the store" in unknown.err
    assert "Traceback" not in unknown.err
    ingest(es, world, report("LAPTOP-9\\kiosk", "LAPTOP-9", employee_id="K-1"))
    nameless = es("sync", "--user", "K-1")  # in the store, nothing Graph could look up
    assert nameless.code == ExitCode.FAILURE
    assert "cannot be looked up" in nameless.err and "UPN or Entra object id" in nameless.err
    mark = len(actions(es))

    world.tenant.delete_user(ids["ann"])  # soft-deleted: Graph answers 404
    gone = es("sync", "--user", "ann@contoso.com")
    assert gone.code == ExitCode.FAILURE, gone.out + gone.err
    assert "404" in gone.err and "on_user_deleted" in gone.err
    assert user(es, "ann@contoso.com")["tracking"] == "tracked"  # one read decides nothing
    assert _new(es, mark) == [] and _run_kinds(world) == ["sync"]
    assert es("sync").code == 0  # the delta round reports the deletion: the policy applies
    (untracked,) = actions(es, "user.untracked")
    assert "deleted" in untracked["reason"]


def test_someone_not_in_the_store_yet_is_preregistered(world: World, es: Any) -> None:
    _people(world, es, "ann")
    newcomer = world.tenant.add_user("new@contoso.com", employee_id="E-77")
    world.tenant.add_member(world.dnt, newcomer)
    done = es("sync", "--user", "new@contoso.com")
    assert done.code == 0, done.out + done.err
    (record,) = actions(es, "user.preregistered")
    view = user(es, "E-77")
    assert view["tracking"] == "untracked" and view["entra_object_id"] == newcomer
    assert es("sync").code == 0
    assert len(actions(es, "user.preregistered")) == 1 and record["user_id"] == view["id"]


def test_dry_run_changes_nothing(world: World, es: Any) -> None:
    configure(world, 'purge_delay = "24h"', 'purge_delay = "0s"')
    ids = _people(world, es, "ann")
    world.tenant.add_member(world.delete, ids["ann"])
    mark = len(actions(es))
    dry = es("sync", "--user", "ann@contoso.com", "--dry-run", "--json")
    assert dry.code == 0, dry.out + dry.err
    body = dry.json()
    assert body["status"] == "dry-run" and body["applied"] == {}
    assert set(body["actions"]) == {"untrack", "purge"}
    assert body["actions"]["purge"]["licenses_freed"] == 1
    text = es("sync", "--user", "ann@contoso.com", "--dry-run")
    assert text.code == 0 and "nothing was changed" in text.out
    view = user(es, "ann@contoso.com")
    assert view["tracking"] == "tracked" and rows(view) == 2
    assert _new(es, mark) == [] and _run_kinds(world) == ["sync"]
    with world.store.reading() as session:
        assert session.scalars(select(WatchedMemberRow)).all() == []
        assert session.scalars(select(EntraMemberRow)).all() == []


def test_graph_unreachable_is_exit_69_and_changes_nothing(world: World, es: Any) -> None:
    ids = _people(world, es, "ann")
    world.tenant.add_member(world.dnt, ids["ann"])
    mark = len(actions(es))
    world.emu.faults.add(r"^/v1\.0/", status=503, retry_after=0, times=None)
    down = es("sync", "--user", "ann@contoso.com")
    assert down.code == ExitCode.UNAVAILABLE, down.out + down.err
    assert "503" in down.err and "Traceback" not in down.err
    assert user(es, "ann@contoso.com")["tracking"] == "tracked"
    assert _new(es, mark) == [] and _run_kinds(world) == ["sync"]
    world.emu.faults.clear()
    assert es("sync", "--user", "ann@contoso.com").code == 0
    assert user(es, "ann@contoso.com")["tracking"] == "untracked"


def test_a_suspect_group_holds_as_a_cycle_would(world: World, es: Any) -> None:
    ids = _people(world, es, "ann", "dee")
    t = world.tenant
    t.add_member(world.delete, ids["dee"])
    assert es("sync").code == 0
    t.delete_group(world.delete)  # by mistake
    assert es("sync").code == ExitCode.HELD
    time_passes(world, 48)
    t.add_member(world.dnt, ids["ann"])  # the DNT group still works

    held = es("sync", "--user", "ann@contoso.com")
    assert held.code == ExitCode.HELD, held.out + held.err
    assert "SUSPECT" in held.out and f"groups accept {world.delete}" in held.out
    assert user(es, "ann@contoso.com")["tracking"] == "untracked"
    suspended = es("sync", "--user", "dee@contoso.com", "--json")
    assert suspended.code == ExitCode.HELD
    body = suspended.json()
    assert [p["group_id"] for p in body["suspended_purges"]] == [world.delete]
    assert body["memberships"][0]["suspect"] is True
    assert actions(es, "user.purged") == [] and actions(es, "purge.cancelled") == []
    assert rows(user(es, "dee@contoso.com")) == 2
    assert es("status", "--json").json()["last_run"]["status"] == "held"


def test_a_nested_group_member_and_the_next_cycle_agree(world: World, es: Any) -> None:
    t = world.tenant
    team = t.add_group("Works council")
    t.add_member(world.dnt, team)
    ids = _people(world, es, "ann", "bob")
    t.add_member(team, ids["ann"])
    assert es("sync", "--user", "ann@contoso.com").code == 0
    assert user(es, "ann@contoso.com")["tracking"] == "untracked"
    with world.store.reading() as session:
        edges = {(e.group_id, e.member_id) for e in session.scalars(select(EntraMemberRow))}
    assert (team, ids["ann"]) in edges and (world.dnt, ids["ann"]) not in edges
    assert es("sync").code == 0
    t.remove_member(team, ids["ann"])
    assert es("sync", "--user", "ann@contoso.com").code == 0
    assert user(es, "ann@contoso.com")["tracking"] == "tracked"
    assert es("sync").code == 0
    assert len(actions(es, "user.untracked")) == 1 and len(actions(es, "user.tracked")) == 1
    verified(es)


def test_a_threshold_of_zero_holds_it_for_approval(world: World, es: Any) -> None:
    configure(world, "max_untracks = 50", "max_untracks = 0")
    ids = _people(world, es, "ann")
    world.tenant.add_member(world.dnt, ids["ann"])
    held = es("sync", "--user", "ann@contoso.com")
    assert held.code == ExitCode.HELD, held.out + held.err
    assert "HELD" in held.out
    (record,) = actions(es, "action.held")
    assert user(es, "ann@contoso.com")["tracking"] == "tracked"
    released = es("approve", record["run_id"])
    assert released.code == 0, released.out + released.err
    assert user(es, "ann@contoso.com")["tracking"] == "untracked"


def test_leaving_the_delete_group_in_the_delay_cancels_the_purge(world: World, es: Any) -> None:
    ids = _people(world, es, "ann")
    world.tenant.add_member(world.delete, ids["ann"])
    assert es("sync", "--user", "ann@contoso.com").code == 0
    world.tenant.remove_member(world.delete, ids["ann"])  # the admin changes their mind
    done = es("sync", "--user", "ann@contoso.com")
    assert done.code == 0, done.out + done.err
    (cancelled,) = actions(es, "purge.cancelled")
    assert "no longer a member of Delete group 'Delete'" in cancelled["reason"]
    view = user(es, "ann@contoso.com")
    assert view["tracking"] == "tracked" and rows(view) == 2
    time_passes(world, 48)
    assert es("sync").code == 0
    assert actions(es, "user.purged") == [] and len(actions(es, "purge.cancelled")) == 1
    verified(es)


def test_a_reused_upn_syncs_the_person_entra_gives_it_to_now(world: World, es: Any) -> None:
    """`sync --user UPN` means the person Entra calls so today: after a departure and a new
    hire under the same UPN, the departed person's record is not taken for the new hire."""
    ids = _people(world, es, "ann")
    departed = user(es, "ann@contoso.com")["id"]
    world.tenant.delete_user(ids["ann"], permanent=True)
    hire = world.tenant.add_user("ann@contoso.com", employee_id="E-9")
    world.tenant.add_member(world.dnt, hire)
    done = es("sync", "--user", "ann@contoso.com", "--json")
    assert done.code == 0, done.out + done.err
    body = done.json()
    assert body["user"]["entra_object_id"] == hire
    (record,) = actions(es, "user.preregistered")
    assert record["entra_object_id"] == hire and record["user_id"] != departed
    assert user(es, f"id:{departed}")["tracking"] == "tracked"  # not the new hire
    text = es("sync", "--user", "upn:ann@contoso.com")
    assert text.code == 0 and f"store record {departed} answers to" in text.out
    assert es("sync").code == 0
    assert user(es, "E-9")["tracking"] == "untracked"
    assert user(es, f"id:{departed}")["tracking"] == "tracked"
    verified(es)
