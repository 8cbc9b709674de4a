"""Graph slow or down: the cycle holds no store transaction while it waits (DESIGN.md, "How
one sync cycle flows"), so ingest and the admin commands stay responsive."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from syncworld import World, later, report
from testkit import sessions_named

from entrasync.errors import EntrasyncError
from entrasync.sim.faults import Fault
from entrasync.store.db import Store


def _cycle_in_background(world: World, when: object) -> tuple[threading.Thread, dict[str, float]]:
    finished: dict[str, float] = {}

    def run() -> None:
        try:
            world.sync(when)  # type: ignore[arg-type]
        finally:
            finished["at"] = time.monotonic()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, finished


def _wait_until_hanging(fault: Fault, timeout: float = 10) -> None:
    """The emulator is holding a request back (the log records it only once answered)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fault.hits:
            return
        time.sleep(0.02)
    pytest.fail(f"no request matched {fault.path} within {timeout}s")


def test_ingest_is_not_blocked_while_the_cycle_waits_for_graph(world: World) -> None:
    alice = world.tenant.add_user("alice@contoso.com")
    world.tenant.add_member(world.dnt, alice)
    world.sync()
    world.tenant.add_user("bob@contoso.com")
    world.emu.log.clear()
    hang = world.emu.faults.add(r"/groups/delta", delay=4.0)  # Graph hangs on the groups round

    thread, finished = _cycle_in_background(world, later(1))
    _wait_until_hanging(hang)
    world.ingest(report("CONTOSO\\carol", "LAPTOP-1", upn="carol@contoso.com"), now=later(1))
    ingested = time.monotonic()
    thread.join(timeout=30)

    assert "at" in finished
    # Before the fix the cycle held the write transaction: ingest waited for it to end.
    assert ingested < finished["at"] - 1.0
    with world.store.reading() as session:
        users = session.execute(text("SELECT count(*) FROM users")).scalar_one()
    assert users == 2  # alice (pre-registered by the first cycle), carol (ingested)


def test_no_session_idles_in_a_transaction_while_graph_is_slow(world: World) -> None:
    if not world.store.url.startswith("postgresql"):
        pytest.skip("PostgreSQL only: SQLite has no sessions to look at")
    name = f"entrasync-test-{uuid.uuid4().hex[:8]}"  # only this test's sessions count
    url = make_url(world.store.url).update_query_dict({"application_name": name})
    world.store = Store(url.render_as_string(hide_password=False))
    world.sync()
    world.tenant.add_user("dave@contoso.com")
    world.emu.log.clear()
    hang = world.emu.faults.add(r"/groups/delta", delay=3.0)

    thread, _ = _cycle_in_background(world, later(1))
    _wait_until_hanging(hang)
    engine = create_engine(world.store.url)
    with engine.connect() as conn:
        idle = sessions_named(conn, name, "state LIKE 'idle in transaction%'")
        ours = sessions_named(conn, name)
    engine.dispose()
    thread.join(timeout=30)
    world.store.engine.dispose()
    assert ours >= 1  # the cycle's pooled connection is there: the filter sees it
    assert idle == 0


def test_a_round_interrupted_midway_is_replayed_from_the_old_link(world: World) -> None:
    """Pages already applied stay applied; the delta link moves only after the last page,
    so the next cycle reads the same changes again and the end state is the same."""
    users = [world.tenant.add_user(f"u{i}@contoso.com") for i in range(7)]
    world.tenant.add_members(world.dnt, users[:5])
    world.emu.page_size = 2
    world.sync()
    world.tenant.add_members(world.delete, users[5:])
    for user in users[:3]:
        world.tenant.remove_member(world.dnt, user)
    world.emu.faults.add(r"/groups/delta", status=400, code="BadRequest", skip=1, times=None)
    with pytest.raises(EntrasyncError, match="400"):
        world.sync(later(1))
    world.emu.faults.clear()
    world.sync(later(2))

    fresh = Store(world.store.url)
    with fresh.reading() as session:
        rows = session.execute(
            text("SELECT via_group, object_id FROM watched_members ORDER BY 1, 2")
        ).all()
    fresh.engine.dispose()
    expected = sorted(
        [(world.dnt.lower(), u) for u in users[3:5]]
        + [(world.delete.lower(), u) for u in users[5:]]
    )
    assert sorted((g, o) for g, o in rows) == expected


def test_a_round_cut_short_is_followed_by_a_full_round(world: World) -> None:
    """A page applied, the next one failed, then the change was undone in Entra: a replay of
    the old link reports nothing for that member (no net change), so only a full round puts
    the mirror right."""
    x, other = world.tenant.add_user("x@contoso.com"), world.tenant.add_user("o@contoso.com")
    for group in (world.dnt, world.delete):
        world.tenant.add_members(group, [x, other])
    world.emu.page_size = 1  # one group per page
    world.sync()
    for group in (world.dnt, world.delete):
        world.tenant.remove_member(group, x)
    world.emu.faults.add(r"/groups/delta.*skiptoken", status=400, code="BadRequest")
    with pytest.raises(EntrasyncError):
        world.sync(later(1))  # the first group's page was applied, the second failed
    for group in (world.dnt, world.delete):
        world.tenant.add_member(group, x)  # the admin undoes it
    world.emu.faults.clear()

    world.sync(later(2))
    with world.store.reading() as session:
        edges = set(session.execute(text("SELECT group_id, member_id FROM entra_members")))
    assert {(world.dnt.lower(), x), (world.delete.lower(), x)} <= edges
