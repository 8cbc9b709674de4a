"""The license tally (store/tally.py) agrees with a full count after every kind of writer:
ingest (new records, new agents, first history, the pending queue), a cycle (links,
untracking, a scheduled purge), admin purge and merge (agents merged too), and the pending
actions (approve, remove, merge into an agent, retention). Both stores."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from storecost import measured
from syncworld import T0, World, later, report

from entrasync.domain.status import UntrackedBy
from entrasync.services import pending
from entrasync.services import users as admin
from entrasync.store import operations, purge, queries, tally
from entrasync.store.schema import AgentRow

ADMIN = "admin:alex"


def counts(world: World) -> tuple[int, int]:
    """(used, live) as the tally holds them, checked against a full count of the store."""
    with world.store.reading() as session:
        row = session.get(tally.LicenseTallyRow, 1)
        assert row is not None
        held = (row.used, row.live_users)
        assert held == tally.full_counts(session)
        assert tally.used_licenses(session) == row.used
    return held


def _pending_mode(world: World, on: bool) -> None:
    text = world.config_path.read_text()
    text = text.replace("pending_mode = true\nmanual_review = true\n", "")
    if on:
        text = text.replace(
            "purchased_licenses = 100\n",
            "purchased_licenses = 100\npending_mode = true\nmanual_review = true\n",
        )
    world.config_path.write_text(text)


def _agent_of(world: World, upn: str) -> int:
    with world.store.reading() as session:
        user = queries.find_user(session, upn)
        agent = session.scalar(
            select(AgentRow.id).where(AgentRow.user_id == user.id).order_by(AgentRow.id).limit(1)
        )
        assert agent is not None
        return int(agent)


def test_the_tally_follows_every_writer(world: World) -> None:
    t = world.tenant
    names = ["ann", "bob", "cat", "dan", "eve", "fay"]
    # cat is not in Entra (never linked): she can be merged into ann by an admin
    ids = {n: t.add_user(f"{n}@contoso.com") for n in names if n != "cat"}
    world.ingest(
        *(report(f"CONTOSO\\{n}", f"PC-{n}", upn=f"{n}@contoso.com", events=2) for n in names),
        report("PC-ANN2\\ann", "PC-ANN2", upn="ann@contoso.com", events=1),
    )
    assert counts(world) == (7, 6)  # ann holds two agents with history

    world.sync(T0)  # links
    assert counts(world) == (7, 6)
    t.add_member(world.delete, ids["dan"])
    t.add_member(world.dnt, ids["eve"])
    world.sync(later(1))  # eve untracked (keeps her license), dan's purge scheduled
    assert counts(world) == (7, 6)
    world.sync(later(26))  # dan purged
    assert counts(world) == (6, 6)

    config = world.config()
    admin.purge(world.store, config, "bob@contoso.com", actor=ADMIN, now=later(27), dry_run=False)
    assert counts(world) == (5, 6)
    # cat into ann: the record goes, and ann's agents fold into one (one person, one license)
    admin.merge(
        world.store,
        config,
        "cat@contoso.com",
        "ann@contoso.com",
        actor=ADMIN,
        now=later(27),
        dry_run=False,
    )
    assert counts(world) == (3, 5)

    _pending_mode(world, on=True)
    old = (T0 - timedelta(days=60)).strftime("%Y-%m-%dT%H:%M:%SZ")
    world.ingest(
        report("NEWCO\\gus", "PC-gus", upn="gus@newco.com", events=2),
        report("NEWCO\\hal", "PC-hal", upn="hal@newco.com", events=1),
        report("NEWCO\\ivy", "PC-ivy", upn="ivy@newco.com", events=1),
        report("NEWCO\\jo", "PC-jo", upn="jo@newco.com", events=1, start=old),
        now=later(28),
    )
    assert counts(world) == (3, 9)  # pending users hold no license yet
    config = world.config()
    pending.approve(world.store, config, "gus@newco.com", actor=ADMIN, now=later(29))
    assert counts(world) == (4, 9)
    pending.remove(world.store, config, "hal@newco.com", actor=ADMIN, now=later(29))
    assert counts(world) == (4, 9)
    into = _agent_of(world, "fay@contoso.com")
    pending.merge(world.store, config, "ivy@newco.com", into, actor=ADMIN, now=later(29))
    assert counts(world) == (4, 8)
    expired = pending.expire_pending_data(world.store, later(30), timedelta(days=30))
    assert expired.rows_deleted == 1
    assert counts(world) == (4, 8)

    _pending_mode(world, on=False)
    # fay on a second computer: a new agent, a second license; gus again: nothing new
    world.ingest(
        report("PC-FAY2\\fay", "PC-FAY2", upn="fay@contoso.com", events=1),
        report("NEWCO\\gus", "PC-gus", upn="gus@newco.com", events=2),
        now=later(31),
    )
    assert counts(world) == (5, 8)


def test_a_purge_then_a_merge_in_one_transaction(world: World) -> None:
    """The purge's `emptied` reading (no license, live as read) stands for the count only
    until another change to the same user: merged away after the purge in the same
    transaction, bob is no longer live, and the tally says so."""
    world.ingest(
        report("CONTOSO\\ann", "PC-ann", upn="ann@contoso.com", events=2),
        report("CONTOSO\\bob", "PC-bob", upn="bob@contoso.com", events=2),
    )
    assert counts(world) == (2, 2)
    with world.store.unit_of_work(later(1), actor=ADMIN) as uow:
        bob = queries.find_user(uow.session, "bob@contoso.com")
        ann = queries.find_user(uow.session, "ann@contoso.com")
        purge.purge_user(uow.session, bob, UntrackedBy.ADMIN, apply=True)
        operations.merge_users(uow.session, bob, ann, "all", apply=True)
    assert counts(world) == (1, 1)


def test_a_purge_alone_reads_nothing_back(world: World) -> None:
    """A purge batch's tally needs no count after the deletes: the readings it took before
    stand for both sides (bench: purge). After the first delete, the only reads are the
    tally's own row and the audit log's head."""
    world.ingest(*(report(f"CONTOSO\\u{n}", f"PC-{n}", upn=f"u{n}@contoso.com") for n in range(3)))

    def purge_all() -> None:
        with world.store.unit_of_work(later(1), actor=ADMIN) as uow:
            users = [queries.find_user(uow.session, f"u{n}@contoso.com") for n in range(3)]
            purge.purge_users(uow.session, [u.id for u in users], UntrackedBy.ADMIN, apply=True)

    statements = [" ".join(s.split()) for s in measured(world.store, purge_all).statements]
    first_delete = next(i for i, s in enumerate(statements) if s.startswith("DELETE"))
    reads_after = [
        s
        for s in statements[first_delete:]
        if s.startswith("SELECT") and "license_tally" not in s and "audit_log" not in s
    ]
    assert reads_after == []
    # The writers' lock taken once (PostgreSQL; SQLite's BEGIN IMMEDIATE holds it), and the
    # tally row not read again after its update (RETURNING gives the new figures).
    assert sum("pg_advisory_xact_lock" in s for s in statements) == (
        world.store.dialect != "sqlite"
    )
    tally_update = next(i for i, s in enumerate(statements) if s.startswith("UPDATE license_tally"))
    assert not [s for s in statements[tally_update:] if "FROM license_tally" in s]
    assert counts(world) == (0, 3)
