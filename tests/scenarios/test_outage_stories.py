"""Outages as an admin lives through them (docs/operations.md, "Outages"): the CLI against the
emulator, on SQLite and PostgreSQL, asserting the exit code, the store and the audit."""

from __future__ import annotations

from typing import Any

from syncworld import World
from test_safety_stories import actions, ingest, rows, time_passes, user, verified
from testkit import report

from entrasync.errors import ExitCode


def _graph_down(world: World) -> None:
    """Every Graph request answers 503 (Retry-After 0 keeps the test fast; the policy is the
    same with the real minutes)."""
    world.emu.faults.add(r"^/v1\.0/", status=503, retry_after=0, times=None)


def test_lose_graph_for_a_day(world: World, es: Any) -> None:
    t = world.tenant
    ann = t.add_user("ann@contoso.com")
    ingest(es, world, report("CONTOSO\\ann", "PC", upn="ann@contoso.com", events=3))
    t.add_member(world.delete, ann)
    assert es("sync").code == 0
    (scheduled,) = actions(es, "purge.scheduled")
    time_passes(world, 48)  # the purge is due

    _graph_down(world)
    down = es("sync")
    assert down.code == ExitCode.UNAVAILABLE, down.out + down.err
    assert "503" in down.err and "Traceback" not in down.err
    assert actions(es, "user.purged") == []  # nothing irreversible without Graph
    assert rows(user(es, "ann@contoso.com")) == 3
    last = es("status", "--json").json()["last_run"]
    assert last["status"] == "failed"
    # The store stays usable: agents keep reporting, admins keep working.
    ingest(es, world, report("CONTOSO\\bob", "PC", upn="bob@contoso.com"))
    assert user(es, "bob@contoso.com")["tracking"] == "tracked"

    world.emu.faults.clear()  # Graph is back
    back = es("sync")
    assert back.code == 0, back.out + back.err
    (purged,) = actions(es, "user.purged")
    assert purged["user_id"] == scheduled["user_id"]
    assert rows(user(es, "ann@contoso.com")) == 0
    verified(es)


def test_graph_back_after_the_delta_tokens_expired(world: World, es: Any) -> None:
    """Eight days without Graph: the delta tokens (7 days) have expired; the next cycle
    re-reads everything and diffs it against the mirror, so what changed meanwhile is seen."""
    t = world.tenant
    bob, carl = t.add_user("bob@contoso.com"), t.add_user("carl@contoso.com")
    ingest(
        es,
        world,
        report("CONTOSO\\bob", "PC", upn="bob@contoso.com"),
        report("CONTOSO\\carl", "PC", upn="carl@contoso.com"),
    )
    t.add_members(world.dnt, [bob, carl])
    assert es("sync").code == 0
    assert user(es, "bob@contoso.com")["tracking"] == "untracked"

    _graph_down(world)
    assert es("sync").code == ExitCode.UNAVAILABLE
    t.remove_member(world.dnt, bob)  # meanwhile in Entra
    t.expire_delta_tokens()
    world.emu.faults.clear()

    back = es("sync", "--json")
    assert back.code == 0, back.out + back.err
    assert back.json()["resync"] is True
    assert user(es, "bob@contoso.com")["tracking"] == "tracked"
    assert user(es, "carl@contoso.com")["tracking"] == "untracked"
    (retracked,) = actions(es, "user.tracked")
    assert retracked["user_id"] == user(es, "bob@contoso.com")["id"]
    verified(es)
