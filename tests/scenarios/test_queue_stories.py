"""A cycle examines only the Entra objects queued since they were last in line
(store/changes.py, docs/sync.md "What a cycle examines"). These stories are the ways an
object can fall out of line between two quiet cycles, and what an admin sees; each ends
with the queue empty again once everything is in line."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from alembic import command
from sqlalchemy import func, select, text, update
from syncworld import World, later
from test_safety_stories import actions, configure, ingest, user, verified
from testkit import report

from entrasync.errors import ExitCode
from entrasync.store.changed_rows import ChangedObjectRow
from entrasync.store.db import Store
from entrasync.store.schema import UserRow


def queued(world: World) -> int:
    with world.store.reading() as s:
        return int(s.scalar(select(func.count()).select_from(ChangedObjectRow)) or 0)


def quiet(es: Any, world: World) -> None:
    """Two syncs with nothing to do: the second examines nothing."""
    for _ in range(2):
        result = es("sync")
        assert result.code == 0, result.out + result.err
    assert queued(world) == 0


def _dana_in_dnt(world: World, es: Any) -> str:
    dana = world.tenant.add_user("dana@contoso.com")
    ingest(es, world, report("CONTOSO\\dana", "PC", upn="dana@contoso.com", events=3))
    world.tenant.add_member(world.dnt, dana)
    assert es("sync").code == 0
    assert user(es, "dana@contoso.com")["tracking"] == "untracked"
    return dana


def test_an_admin_tracking_a_dnt_member_is_undone_by_the_next_sync(world: World, es: Any) -> None:
    _dana_in_dnt(world, es)
    quiet(es, world)

    tracked = es("users", "track", "dana@contoso.com", "--actor", "jane")
    assert tracked.code == 0, tracked.err
    assert queued(world) > 0  # the admin's change queued the person for the next cycle
    result = es("sync")
    assert result.code == 0, result.out
    assert user(es, "dana@contoso.com")["tracking"] == "untracked"
    untracks = actions(es, "user.untracked")
    assert [u["actor"] for u in untracks] == ["entrasync", "entrasync"]
    assert "Do Not Track" in untracks[-1]["reason"]
    quiet(es, world)
    verified(es)


def test_held_untracks_stay_planned_until_approved(world: World, es: Any) -> None:
    t = world.tenant
    configure(world, "max_untracks = 50", "max_untracks = 1")
    people = [t.add_user(f"h{i}@contoso.com") for i in range(3)]
    ingest(es, world, *(report(f"CONTOSO\\h{i}", "PC", upn=f"h{i}@contoso.com") for i in range(3)))
    assert es("sync").code == 0
    quiet(es, world)

    t.add_members(world.dnt, people)
    first = es("sync", "--json")
    assert first.code == ExitCode.HELD, first.out
    # a quiet cycle after a held one plans the held people again, and holds them again
    second = es("sync", "--json")
    assert second.code == ExitCode.HELD, second.out
    assert second.json()["held"] == {"untrack": 3}
    assert {user(es, f"h{i}@contoso.com")["tracking"] for i in range(3)} == {"tracked"}

    approved = es("approve", second.json()["run_id"], "--actor", "jane", "--json")
    assert approved.code == 0, approved.err
    assert {user(es, f"h{i}@contoso.com")["tracking"] for i in range(3)} == {"untracked"}
    quiet(es, world)
    assert len(actions(es, "user.untracked")) == 3
    verified(es)


def test_a_dnt_member_reporting_from_a_new_computer_stays_untracked(world: World, es: Any) -> None:
    _dana_in_dnt(world, es)
    quiet(es, world)
    ingest(es, world, report("CONTOSO\\dana", "PC-NEW", upn="dana@contoso.com", events=2))
    assert es("sync").code == 0
    assert user(es, "dana@contoso.com")["tracking"] == "untracked"
    assert len(actions(es, "user.untracked")) == 1
    quiet(es, world)


def test_a_store_from_before_the_queue_is_examined_whole_once(
    world: World, es: Any, store_url: str
) -> None:
    """`db upgrade` to 0010 queues every watched member and every untracked record: an
    out-of-line member left by an older entrasync (here: tracked while in the DNT group) is
    planned by the first sync after the upgrade."""
    _dana_in_dnt(world, es)
    world.store.engine.dispose()
    store = Store(store_url, check_schema=False)
    try:
        command.downgrade(store._alembic_config(), "0009")  # an entrasync from before 0010
        with store.transaction() as s:
            s.execute(update(UserRow).values(tracking="tracked", untracked_by=None))
    finally:
        store.engine.dispose()
    assert es("sync").code == ExitCode.CONFIG  # the schema is out of date: upgrade first
    upgraded = es("db", "upgrade")
    assert upgraded.code == 0, upgraded.err
    assert queued(world) > 0
    assert es("sync").code == 0
    assert user(es, "dana@contoso.com")["tracking"] == "untracked"
    quiet(es, world)
    verified(es)


def _drop_user_trigger(world: World) -> None:
    """What a change made outside entrasync with the triggers off looks like (a restore of
    a dump without them, a DBA's bulk fix)."""
    on = " ON users" if world.store.dialect == "postgresql" else ""
    with world.store.transaction() as s:
        s.execute(text(f"DROP TRIGGER changed_user_update{on}"))


def test_a_change_bypassing_the_triggers_is_caught_by_the_periodic_full_read(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    dana = world.tenant.add_user("dana@contoso.com")
    world.ingest(report("CONTOSO\\dana", "PC", upn="dana@contoso.com"))
    world.tenant.add_member(world.dnt, dana)
    world.sync(later(0))
    world.sync(later(1))
    _drop_user_trigger(world)
    with world.store.transaction() as s:
        s.execute(update(UserRow).values(tracking="tracked", untracked_by=None))

    assert world.sync(later(2)).applied["untrack"] == 0  # not queued: not examined
    with caplog.at_level(logging.WARNING, logger="entrasync.sync"):
        full = world.sync(later(24 * 6 + 1))  # sync.full_resync_every (6d) has passed
    assert full.full_read
    assert full.applied["untrack"] == 1
    assert "out of line without being queued" in caplog.text
    with world.store.reading() as s:
        assert s.scalar(select(UserRow.tracking)) == "untracked"
