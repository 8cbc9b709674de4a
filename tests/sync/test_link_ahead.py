"""A first sync links most records in batches before it plans (sync/read.py `link_ahead`), so
its memory follows the batch, not the tenant. These cycles run against the emulator with
batches of 3 and with the pass off, and must end the same: links, merges, skipped merges,
membership actions, audit records; and a cycle that fails between batches is finished by
the next one."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select, text
from syncworld import World, later, report

from entrasync.domain.actions import ActionKind
from entrasync.services.audit_review import verify
from entrasync.store.actions import link_users
from entrasync.store.db import Store
from entrasync.store.schema import AuditRow, IdentifierRow, UserRow
from entrasync.sync import read

PLAIN = 10


def _populate(world: World) -> dict[str, str]:
    t = world.tenant
    objects = {f"p{i}": t.add_user(f"p{i}@contoso.com") for i in range(PLAIN)}
    objects["dnt"] = t.add_user("dana@contoso.com")
    objects["del"] = t.add_user("dell@contoso.com")
    # Two records of one person after a domain migration: a merge, never two links.
    objects["ann"] = t.add_user(
        "ann@newco.com", proxy_addresses=["SMTP:ann@newco.com", "smtp:ann@oldco.com"]
    )
    # One address two people list: the record matching both is not merged or linked.
    objects["twin1"] = t.add_user(
        "twin1@contoso.com", proxy_addresses=["SMTP:twin1@contoso.com", "smtp:desk@contoso.com"]
    )
    objects["twin2"] = t.add_user(
        "twin2@contoso.com", proxy_addresses=["SMTP:twin2@contoso.com", "smtp:desk@contoso.com"]
    )
    # A record whose UPN is one object's and whose mail another lists: linked by the plan.
    objects["rank"] = t.add_user("rita@contoso.com")
    objects["other"] = t.add_user(
        "otto@contoso.com", proxy_addresses=["SMTP:otto@contoso.com", "smtp:rita.m@contoso.com"]
    )
    t.add_member(world.dnt, objects["dnt"])
    t.add_member(world.delete, objects["del"])
    world.ingest(
        *(report(f"CONTOSO\\p{i}", f"PC-{i}", upn=f"p{i}@contoso.com") for i in range(PLAIN)),
        report("CONTOSO\\dana", "PC-D", upn="dana@contoso.com"),
        report("CONTOSO\\dell", "PC-X", upn="dell@contoso.com"),
        report("OLDCO\\ann", "PC-A", upn="ann@oldco.com", start="2026-05-01T09:00:00Z"),
        report("NEWCO\\ann", "PC-A2", upn="ann@newco.com", start="2026-05-20T09:00:00Z"),
        report("CONTOSO\\desk", "PC-S", email="desk@contoso.com"),
        report("CONTOSO\\rita", "PC-R", upn="rita@contoso.com", email="rita.m@contoso.com"),
    )
    return objects


def _records(world: World) -> Counter[str]:
    with world.store.reading() as s:
        return Counter(s.scalars(select(AuditRow.action)))


def _linked(world: World) -> dict[str, str | None]:
    """Each live record's logon (as ingested) -> the Entra object it is linked to."""
    with world.store.reading() as s:
        rows = s.execute(
            select(IdentifierRow.value, UserRow.entra_object_id)
            .join(UserRow, UserRow.id == IdentifierRow.user_id)
            .where(IdentifierRow.kind == "logon", UserRow.merged_into_id.is_(None))
        )
        return {str(logon): obj for logon, obj in rows}


@pytest.mark.parametrize("batch", [3, 10_000])
def test_a_first_sync_links_in_batches_and_plans_the_rest(
    world: World, monkeypatch: pytest.MonkeyPatch, batch: int
) -> None:
    monkeypatch.setattr(read, "LINK_BATCH", batch)
    ahead: list[dict[int, str]] = []
    real = link_users

    def spy(session: Any, pairs: dict[int, str]) -> int:
        ahead.append(dict(pairs))
        return real(session, pairs)

    monkeypatch.setattr(read, "link_users", spy)
    objects = _populate(world)
    result = world.sync(later(0))
    linked_ahead = {o for pairs in ahead for o in pairs.values()}
    if batch == 3:
        # Every one-to-one pair went ahead, in batches of at most three records.
        plain = {objects[k] for k in [*(f"p{i}" for i in range(PLAIN)), "dnt", "del"]}
        assert linked_ahead == plain and all(len(p) <= 3 for p in ahead)
    else:
        assert ahead == []
    assert result.applied["link"] == PLAIN + 3  # plain, dnt, del, and rita by the plan
    assert result.applied["merge"] == 1
    assert result.applied["untrack"] == 2 and result.applied["schedule_purge"] == 1
    assert result.applied["merge_skipped"] == 1
    records = _records(world)
    assert records["user.merged"] == 1 and records["merge.skipped"] == 1
    assert records["user.untracked"] == 2 and records["purge.scheduled"] == 1
    linked = _linked(world)
    assert linked["contoso\\rita"] == objects["rank"]
    assert linked["contoso\\desk"] is None
    assert verify(world.store).problem is None
    # The next cycle re-examines the objects the first one saw change: the mail address that
    # another person lists is retired from Rita's record (either way), then all is quiet.
    assert world.sync(later(1)).applied == Counter({"retire_identifier": 1})
    assert sum(world.sync(later(2)).applied.values()) == 0


def test_a_cycle_cut_between_link_batches_is_finished_by_the_next(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(read, "LINK_BATCH", 3)
    real = link_users
    calls = Counter[str]()

    def failing(session: Any, pairs: dict[int, str]) -> int:
        calls["link"] += 1
        if calls["link"] == 3:
            raise RuntimeError("the process dies here")
        return real(session, pairs)

    monkeypatch.setattr(read, "link_users", failing)
    objects = _populate(world)
    with pytest.raises(RuntimeError):
        world.sync(later(0))
    linked_so_far = sum(1 for obj in _linked(world).values() if obj)
    assert 0 < linked_so_far < PLAIN  # the first batches committed, the third did not
    monkeypatch.setattr(read, "link_users", real)
    result = world.sync(later(1))
    assert result.applied["merge"] == 1 and result.applied["untrack"] == 2
    linked = _linked(world)
    assert all(linked[f"contoso\\p{i}"] == objects[f"p{i}"] for i in range(PLAIN))
    assert linked["contoso\\dana"] == objects["dnt"]
    records = _records(world)
    assert records["user.merged"] == 1 and records["user.untracked"] == 2
    assert verify(world.store).problem is None


def _disabled_and_dnt(world: World) -> None:
    """Six people, three of them disabled in Entra, and Dana in the DNT group; disabled
    accounts are untracked, and one untrack is the most a cycle may make."""
    t = world.tenant
    ids = [t.add_user(f"p{i}@contoso.com") for i in range(6)]
    t.add_member(world.dnt, t.add_user("dana@contoso.com"))
    for oid in ids[:3]:
        t.set_account_enabled(oid, False)
    world.ingest(
        *(report(f"CONTOSO\\p{i}", f"PC-{i}", upn=f"p{i}@contoso.com") for i in range(6)),
        report("CONTOSO\\dana", "PC-D", upn="dana@contoso.com"),
    )
    world.configure('[sync]\non_user_disabled = "untrack"\n')
    text_ = world.config_path.read_text().replace("max_untracks = 50", "max_untracks = 1")
    world.config_path.write_text(text_)


@pytest.mark.parametrize("batch", [3, 10_000])
def test_records_of_disabled_accounts_are_left_to_the_plan(
    world: World, monkeypatch: pytest.MonkeyPatch, batch: int
) -> None:
    """Linked ahead, the disabled accounts' records would be untracked in the first cycle
    (not the second, as the plan alone does) and push its untracks over the threshold:
    Dana's Do Not Track untrack would be held. They are not linked ahead."""
    monkeypatch.setattr(read, "LINK_BATCH", batch)
    _disabled_and_dnt(world)
    preview = world.sync(later(0), dry_run=True)
    first = world.sync(later(0))
    assert first.applied["link"] == 7 and first.applied["untrack"] == 1
    assert first.held == Counter() and dict(preview.held) == {}
    assert len(preview.plan.of_kind(ActionKind.UNTRACK)) == 1
    second = world.sync(later(1))
    assert second.held == Counter({"untrack": 3})  # the three disabled accounts, as before


class _Counting:
    """A session that counts the rows each statement returns."""

    def __init__(self, session: Any, rows: list[int]) -> None:
        self._session, self._rows = session, rows

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        result = list(self._session.execute(*args, **kwargs))
        self._rows.append(len(result))
        return result

    def scalars(self, *args: Any, **kwargs: Any) -> Any:
        result = list(self._session.scalars(*args, **kwargs))
        self._rows.append(len(result))
        return result

    def scalar(self, *args: Any, **kwargs: Any) -> Any:
        self._rows.append(1)
        return self._session.scalar(*args, **kwargs)


NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _linked_store(store: Store, records: int, every: int) -> None:
    """`records` records linked to Entra objects, but every `every`-th: a local account
    that matches nothing."""
    users, idents, entra, keys = [], [], [], []
    for i in range(1, records + 1):
        obj = None if i % every == 0 else f"obj-{i:06d}"
        users.append({"id": i, "obj": obj, "now": NOW})
        if obj is None:
            idents.append({"uid": i, "kind": "logon", "value": f"pc-{i}\\admin"})
            continue
        idents.append({"uid": i, "kind": "upn", "value": f"u{i}@contoso.com"})
        entra.append({"obj": obj, "upn": f"u{i}@contoso.com", "now": NOW})
        keys.append({"kind": "upn", "value": f"u{i}@contoso.com", "obj": obj, "rank": 1})
    with store.engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO users (id, tracking, status, entra_object_id, created_at) "
                "VALUES (:id, 'tracked', 'active', :obj, :now)"
            ),
            users,
        )
        c.execute(
            text("INSERT INTO identifiers (user_id, kind, value) VALUES (:uid, :kind, :value)"),
            idents,
        )
        c.execute(
            text(
                "INSERT INTO entra_users (object_id, upn, proxy_addresses, previous_upns, "
                "updated_at) VALUES (:obj, :upn, '[]', '[]', :now)"
            ),
            entra,
        )
        c.execute(
            text(
                "INSERT INTO entra_keys (kind, value, object_id, rank) "
                "VALUES (:kind, :value, :obj, :rank)"
            ),
            keys,
        )


def test_a_pass_reads_only_what_the_unlinked_records_hold(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """600 records, 30 of them local accounts that never link: a pass (every object counts
    as changed: no cycle has completed) reads their identifiers, not every linked record's."""
    _linked_store(store, 600, 20)
    monkeypatch.setattr(read, "LINK_BATCH", 10)
    rows: list[int] = []

    @contextmanager
    def scope() -> Iterator[Any]:
        with store.unit_of_work(NOW) as uow:
            yield type("Uow", (), {"session": _Counting(uow.session, rows)})()

    assert read.link_ahead(scope, NOW) == 0
    assert len(rows) > 3  # the pass ran
    assert sum(rows) <= 4 * 30, rows
