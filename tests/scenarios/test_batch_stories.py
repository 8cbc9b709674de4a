"""A first sync of a large tenant plans and applies the watched members in batches
(sync/batches.py), so that its memory follows the batch, not the tenant. These stories run
the CLI against the emulator with batches of a few objects (the production batch is 20,000)
and check what the admin sees: the same store, audit records and exit codes as a plan made
whole, exact counts with a capped listing, thresholds judged on the whole plan, and a crash
between two batches finished by the next cycle."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from syncworld import SECRET, World, later, make_world
from test_safety_stories import actions, configure, verified
from testkit import report

from entrasync.domain import plan_model
from entrasync.domain.actions import ActionKind
from entrasync.errors import ExitCode
from entrasync.services.audit_review import verify
from entrasync.services.users import list_users
from entrasync.store import membership
from entrasync.store.db import Store
from entrasync.store.schema import AuditRow, HeldActionRow
from entrasync.sync import batches

DNT, DELETE, NEW = 7, 4, 3  # tracked DNT members, Delete members with history, unknown members


@pytest.fixture
def in_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of 3 watched objects, and every cycle examines every object, as a first sync
    does (the production limits are 20,000 each)."""
    monkeypatch.setattr(batches, "BATCH", 3)
    monkeypatch.setattr(membership, "QUEUED_AT_MOST", -1)


def _tenant(world: World) -> None:
    t = world.tenant
    dnt = [t.add_user(f"d{i}@contoso.com") for i in range(DNT)]
    dele = [t.add_user(f"x{i}@contoso.com") for i in range(DELETE)]
    new = [t.add_user(f"n{i}@contoso.com") for i in range(NEW)]
    t.add_members(world.dnt, [*dnt, *new[:2]])
    t.add_members(world.delete, [*dele, new[2], dnt[0]])  # d0: Delete wins over DNT
    lines = [report(f"CONTOSO\\d{i}", "PC", upn=f"d{i}@contoso.com") for i in range(DNT)]
    lines += [report(f"CONTOSO\\x{i}", "PC", upn=f"x{i}@contoso.com") for i in range(DELETE)]
    world.ingest(*lines)


def _audit(world: World) -> Counter[str]:
    with world.store.reading() as s:
        return Counter(s.scalars(select(AuditRow.action)))


def test_a_first_sync_in_parts_does_what_a_whole_plan_does(
    world: World, es: Any, in_parts: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plan_model, "LISTED", 4)
    _tenant(world)
    first = es("sync", "--json")
    assert first.code == 0, first.out + first.err
    out = first.json()
    untracks = DNT + DELETE  # d0 once, through the Delete group
    assert out["actions"]["untrack"]["count"] == untracks
    assert out["actions"]["untrack"]["listed"] == 4  # the listing is capped, the count exact
    assert out["actions"]["preregister"]["count"] == NEW
    assert out["actions"]["schedule_purge"]["count"] == DELETE + 1
    assert out["scheduled_purges_count"] == DELETE + 1 and len(out["scheduled_purges"]) == 4
    assert out["applied"] == {
        "link": DNT + DELETE,
        "untrack": untracks,
        "preregister": NEW,
        "schedule_purge": DELETE + 1,
    }
    records = _audit(world)
    assert records["user.untracked"] == untracks and records["user.preregistered"] == NEW
    assert records["purge.scheduled"] == DELETE + 1
    assert all(u["tracking"] == "untracked" for u in list_users(world.store))
    (d0,) = [r for r in actions(es, "purge.scheduled") if "d0@contoso.com" in str(r)]
    assert "Delete" in d0["reason"]
    again = es("sync", "--json")
    assert again.code == 0 and again.json()["actions"] == {}, again.out
    assert _audit(world) == records
    verified(es)


def test_a_threshold_judges_the_whole_plan_made_in_parts(
    world: World, es: Any, in_parts: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each batch holds fewer untracks than the limit; together they exceed it: all are held,
    one `action.held` record says how many, and `approve` releases them."""
    monkeypatch.setattr(plan_model, "LISTED", 4)
    configure(world, "max_untracks = 50", "max_untracks = 5")
    _tenant(world)
    first = es("sync", "--json")
    assert first.code == ExitCode.HELD, first.out + first.err
    untracks = DNT + DELETE
    assert first.json()["held"] == {"untrack": untracks}
    assert first.json()["actions"]["untrack"]["listed"] == 4  # planned in parts
    (held,) = actions(es, "action.held")
    assert held["details"]["count"] == untracks and held["details"]["limit"] == 5
    with world.store.reading() as s:
        assert s.scalar(select(func.count()).select_from(HeldActionRow)) == untracks
    tracked = [u for u in list_users(world.store) if u["tracking"] == "tracked"]
    assert len(tracked) == untracks  # nobody untracked; the pre-registrations ran
    assert len(actions(es, "user.preregistered")) == NEW
    approved = es("approve", first.json()["run_id"], "--actor", "jane", "--json")
    assert approved.code == 0, approved.out + approved.err
    again = approved.json()["actions"]["untrack"]  # approve made the plan in parts too
    assert (again["count"], again["listed"]) == (untracks, 4)
    assert approved.json()["applied"] == {"untrack": untracks}
    assert len(actions(es, "user.untracked")) == untracks
    assert all(u["tracking"] == "untracked" for u in list_users(world.store))
    verified(es)


def _sync(config: Path, crash: str | None) -> subprocess.CompletedProcess[str]:
    """`entrasync sync` in a process of its own, with batches of 3 watched objects."""
    env = {**os.environ, "ENTRASYNC_CLIENT_SECRET": SECRET}
    env.pop("ENTRASYNC_CRASH_AT", None)
    if crash:
        env["ENTRASYNC_CRASH_AT"] = crash
    bootstrap = (
        "import sys\n"
        "from entrasync.store import membership\n"
        "from entrasync.sync import batches\n"
        "from entrasync.cli import main\n"
        "batches.BATCH, membership.QUEUED_AT_MOST = 3, 2\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", bootstrap, "--config", str(config), "sync"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _snapshot(store: Store) -> tuple[Any, Counter[str]]:
    users = sorted(
        (tuple(sorted(i["value"] for i in u["identifiers"])), u["tracking"], u["licenses"])
        for u in list_users(store)
    )
    with store.reading() as s:
        return users, Counter(s.scalars(select(AuditRow.action)))


def test_a_merge_in_the_head_cannot_carry_a_purge_past_its_threshold(
    world: World, in_parts: None
) -> None:
    """Eve is in the Delete group but not in the store: pre-registered, nothing to purge.
    After a rename her agent reports the new UPN (a second record). The next cycle merges the
    two in its head; her survivor then holds history and the purge delay has passed. The
    purge the members' part now finds is judged by `max_purges = 0` and held; it never runs
    unapproved (a review found it ran when the threshold judged the plan counted before the
    merge)."""
    configure(world, "max_purges = 50", "max_purges = 0")
    t = world.tenant
    dnt = [t.add_user(f"d{i}@contoso.com") for i in range(5)]
    t.add_members(world.dnt, dnt)
    eve = t.add_user("eve@contoso.com")
    t.add_member(world.delete, eve)
    world.ingest(*(report(f"CONTOSO\\d{i}", "PC", upn=f"d{i}@contoso.com") for i in range(5)))
    assert world.sync(later(0)).applied["preregister"] == 1
    t.rename_upn(eve, "eve@newco.com")
    world.ingest(report("NEWCO\\eve", "PC-9", upn="eve@newco.com", events=3), now=later(1))
    result = world.sync(later(30))
    assert result.applied["merge"] == 1 and result.applied["purge"] == 0, result.applied
    assert result.status == "held" and result.held == {"purge": 1}
    assert result.tally.count[ActionKind.PURGE] == 1  # what the admin is shown was counted
    records = _audit(world)
    assert records["user.merged"] == 1 and records["user.purged"] == 0
    with world.store.reading() as s:
        details = [
            d for a, d in s.execute(select(AuditRow.action, AuditRow.details)) if a == "action.held"
        ]
        assert [(d["kind"], d["count"], d["limit"]) for d in details] == [("purge", 1, 0)]
        assert s.scalar(select(func.count()).select_from(HeldActionRow)) == 1
    (eve_user,) = [u for u in list_users(world.store) if "eve@newco.com" in str(u["identifiers"])]
    assert eve_user["activity_rows"] == 3  # history kept until an admin approves


BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_crash_between_batches_is_finished_by_the_next_cycle(
    tmp_path: Path, make_store_url: Any, backend: str
) -> None:
    """SIGKILL in the second and in the fourth batch, restart: the store and the audit end
    as after a cycle that was not interrupted, and the chain verifies."""
    results = {}
    for case in (None, "between-actions:5", "mid-action:10"):
        url = make_store_url(backend)
        Store(url, check_schema=False).upgrade()
        case_dir = tmp_path / (case or "reference").replace(":", "-")
        case_dir.mkdir()
        for world in make_world(case_dir, url):
            _tenant(world)
            if case is not None:
                crashed = _sync(world.config_path, case)
                assert crashed.returncode == -9, (case, crashed.stdout, crashed.stderr)
            finished = _sync(world.config_path, None)
            assert finished.returncode == 0, (case, finished.stdout, finished.stderr)
            again = _sync(world.config_path, None)
            assert again.returncode == 0 and "0 actions" in again.stdout, again.stdout
            assert verify(world.store).problem is None
            results[case] = _snapshot(world.store)
    reference = results.pop(None)
    assert reference[1]["user.untracked"] == DNT + DELETE
    for case, snapshot in results.items():
        assert snapshot == reference, case


def _oid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def _story(world: World) -> list[tuple[Any, Counter[str], str]]:
    """Two Delete groups and a DNT group; purges due at once. After the first sync: a
    domain migration (duplicates to merge, one of them a Delete member), new members, and
    the second Delete group deleted by mistake (suspect: its purges suspended)."""
    t = world.tenant
    spare = t.add_group("Delete (legal hold)", id=_oid(900))
    configure(world, f'delete = ["{world.delete}"]', f'delete = ["{world.delete}", "{spare}"]')
    configure(world, 'purge_delay = "24h"', 'purge_delay = "0s"')
    people = [t.add_user(f"p{i}@oldco.com", id=_oid(i)) for i in range(12)]
    t.add_members(world.dnt, people[:5])
    t.add_members(world.delete, people[5:8])
    t.add_members(spare, people[8:10])
    world.ingest(*(report(f"OLDCO\\p{i}", "PC", upn=f"p{i}@oldco.com") for i in range(12)))
    seen = []
    result = world.sync(later(0))
    seen.append((*_snapshot(world.store), result.status))
    for i in (0, 6, 10, 11):  # 6 was purged already: its new record is a new person's history
        t.rename_upn(people[i], f"p{i}@newco.com")
    world.ingest(
        *(report(f"NEWCO\\p{i}", "PC-2", upn=f"p{i}@newco.com") for i in (0, 6, 10, 11)),
        now=later(1),
    )
    t.add_members(spare, [people[11]])
    t.add_members(world.delete, [t.add_user("late@oldco.com", id=_oid(50))])
    world.ingest(report("OLDCO\\late", "PC", upn="late@oldco.com"), now=later(1))
    t.delete_group(spare)
    for hours in (2, 3):
        result = world.sync(later(hours))
        seen.append((*_snapshot(world.store), result.status))
    return seen


@pytest.mark.parametrize("backend", BACKENDS)
def test_merges_due_purges_and_a_suspect_group_end_the_same_in_parts_as_whole(
    tmp_path: Path, make_store_url: Any, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same tenant and the same two cycles, once planned whole and once in parts of
    three watched objects: the same records, licenses and audit after each cycle."""
    outcomes = {}
    for name, batch in (("whole", batches.BATCH), ("parts", 3)):
        monkeypatch.setattr(batches, "BATCH", batch)
        monkeypatch.setattr(membership, "QUEUED_AT_MOST", -1 if name == "parts" else 20_000)
        url = make_store_url(backend)
        Store(url, check_schema=False).upgrade()
        (tmp_path / name).mkdir()
        for world in make_world(tmp_path / name, url):
            outcomes[name] = _story(world)
            assert verify(world.store).problem is None
    whole, parts = outcomes["whole"], outcomes["parts"]
    assert whole[0][1]["user.purged"] == 5 and whole[1][1]["user.merged"] >= 2
    assert whole[1][1]["group.suspect"] == 1 and whole[1][2] == "held"
    assert parts[0] == whole[0] and parts[2] == whole[2]
    # In parts the members are planned after the head's merges ran: p6, purged in the first
    # cycle, reported again under the new UPN, and that history is purged in the cycle that
    # merges it (confirmed with Graph, within max_purges), a cycle before the whole plan does.
    assert parts[1][1] - whole[1][1] == Counter({"user.purged": 1})
    assert whole[1][1] - parts[1][1] == Counter()
    assert whole[2][1]["user.purged"] == 7  # the first five, late@, and p6 again


def test_graph_lost_between_batches_stops_the_purges_until_it_is_back(
    world: World, es: Any, in_parts: None
) -> None:
    """A first sync in parts with purges due at once (purge_delay 0s); Graph answers the
    first part's confirmation, then goes down (every `$batch` 503). The purges confirmed
    before the outage ran; no other purge runs; the cycle fails with exit 69 and says so.
    When Graph is back the next cycle finishes: every Delete member purged once, the same
    records as a cycle with no outage, and the chain verifies."""
    configure(world, 'purge_delay = "24h"', 'purge_delay = "0s"')
    _tenant(world)
    world.emu.faults.add(r"^/v1\.0/\$batch", status=503, retry_after=0, skip=1, times=None)
    down = es("sync")
    assert down.code == ExitCode.UNAVAILABLE, down.out + down.err
    assert "503" in down.err and "Traceback" not in down.err
    first = actions(es, "user.purged")
    assert 0 < len(first) < DELETE + 1  # the first part's purges only
    assert actions(es, "purge.unconfirmed") == []  # not run, not judged: the run failed
    assert es("status", "--json").json()["last_run"]["status"] == "failed"

    world.emu.faults.clear()  # Graph is back
    back = es("sync")
    assert back.code == 0, back.out + back.err
    purged = actions(es, "user.purged")
    assert len(purged) == DELETE + 1  # x0..x3 and d0 (n2, pre-registered, holds nothing)
    assert len({r["user_id"] for r in purged}) == len(purged)  # nobody purged twice
    records = _audit(world)
    assert records["user.untracked"] == DNT + DELETE and records["user.preregistered"] == NEW
    assert all(u["tracking"] == "untracked" for u in list_users(world.store))
    again = es("sync", "--json")
    assert again.code == 0 and again.json()["actions"] == {}, again.out
    verified(es)
