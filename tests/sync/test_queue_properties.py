"""Property: whatever Entra and the admins do between cycles, a cycle that examines only the
queued objects (store/changes.py) sees what examining every object would, a plan made in
parts (sync/batches.py) is the plan made whole, and the watched rows a round updated from
its changes alone equal a re-derivation from every edge.

Random steps against the emulator: members join and leave the DNT, Delete and a nested
group, the nested group is nested and un-nested, accounts are deleted, restored, disabled
and enabled, people report from new computers, an admin tracks someone; cycles run in
between. After every step and every cycle both are checked."""

from __future__ import annotations

import itertools
import uuid
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from syncworld import World, later, make_world, report
from testkit import BACKENDS

from entrasync.cli import main
from entrasync.domain.entra import effective_members
from entrasync.store import changes, membership
from entrasync.store import mirror as mirror_rows
from entrasync.store.db import Store
from entrasync.store.schema import EntraGroupRow, UserRow, WatchedMemberRow
from entrasync.sync import batches
from entrasync.sync.read import check_queue, plan_now, queue_rules

PEOPLE = 6
Step = tuple[str, int]
STEPS = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "join-dnt",
                "join-delete",
                "join-child",
                "leave-dnt",
                "leave-delete",
                "leave-child",
                "nest",
                "unnest",
                "delete",
                "restore",
                "disable",
                "enable",
                "report",
                "track",
                "toggle-disabled",
                "toggle-retrack",
                "sync",
                "sync",
            ]
        ),
        st.integers(0, PEOPLE - 1),
    ),
    min_size=4,
    max_size=14,
)

# A departed member kept untracked while disabled, then `on_user_disabled = "ignore"`.
DISABLED_THEN_IGNORED: list[Step] = [
    ("join-dnt", 0),
    ("sync", 0),
    ("disable", 0),
    ("leave-dnt", 0),
    ("sync", 0),
    ("toggle-disabled", 0),
    ("sync", 0),
]
# A member who left while `retrack_on_removal` was off, then it is turned on.
LEFT_WHILE_NO_RETRACK: list[Step] = [
    ("join-dnt", 0),
    ("sync", 0),
    ("toggle-retrack", 0),
    ("leave-dnt", 0),
    ("sync", 0),
    ("toggle-retrack", 0),
    ("sync", 0),
]


def _queued_sees_everything(world: World, now: datetime) -> None:
    """The plan from the queued objects is the plan from every object."""
    config = world.config()
    with world.store.reading() as s:
        queued, _ = plan_now(s, config, now, examine=membership.Examine.QUEUED)
        every, _ = plan_now(s, config, now, examine=membership.Examine.EVERY)
    for part in ("actions", "scheduled", "suspended"):
        assert sorted(map(repr, getattr(queued, part))) == sorted(
            map(repr, getattr(every, part))
        ), part


def _parts_plan_the_whole(world: World, now: datetime) -> None:
    """The plan made in parts of one watched object each (sync/batches.py, a first sync of
    a large tenant) is the plan made whole."""
    config = world.config()
    with world.store.reading() as s:
        whole, _ = plan_now(s, config, now, examine=membership.Examine.EVERY)
        parts = batches.parts_of(s, config, now, batch=1)
    if parts is None:  # at most one watched object: planned whole in a cycle too
        return
    made = [parts.head, *batches.planned_parts(world.store, parts)]
    assert len(made) == len(parts.spans) + 2
    for part in ("actions", "scheduled", "suspended"):
        pieces = [item for plan in made for item in getattr(plan, part)]
        assert sorted(map(repr, pieces)) == sorted(map(repr, getattr(whole, part))), part


def _watched_rows_are_derived(world: World) -> None:
    with world.store.reading() as s:
        edges = mirror_rows.mirror_edges(s)
        suspect = set(s.scalars(select(EntraGroupRow.id).where(EntraGroupRow.suspect.is_not(None))))
        rows: dict[str, set[str]] = {}
        for group, member in s.execute(
            select(WatchedMemberRow.via_group, WatchedMemberRow.object_id)
        ):
            rows.setdefault(group, set()).add(member)
    for group in (world.dnt, world.delete):
        if group not in suspect:
            derived = effective_members(edges, [group])[group]
            assert rows.get(group, set()) == derived, group


class _Run:
    def __init__(self, world: World, tmp: Path) -> None:
        self.world, self.tmp = world, tmp
        self.child = world.tenant.add_group("Contractors")
        self.people = [world.tenant.add_user(f"p{i}@contoso.com") for i in range(PEOPLE)]
        self.hours = itertools.count(1)
        self.settings = {"disabled": False, "retrack": True}
        self.computers = itertools.count()
        world.ingest(*(self._report(i) for i in range(PEOPLE)))

    def _report(self, i: int) -> str:
        return report(f"CONTOSO\\p{i}", f"PC-{next(self.computers)}", upn=f"p{i}@contoso.com")

    def now(self) -> datetime:
        return later(next(self.hours) * 7)  # past the purge delay now and then

    def sync(self) -> None:
        # a cycle reads Graph first: what it plans from is checked right after it, and
        # again before the next one (with the steps in between)
        self.world.sync(self.now())
        _queued_sees_everything(self.world, self.now())
        _parts_plan_the_whole(self.world, self.now())
        _watched_rows_are_derived(self.world)

    def toggle(self, setting: str) -> None:
        self.settings[setting] = not self.settings[setting]
        disabled = "untrack" if self.settings["disabled"] else "ignore"
        retrack = "true" if self.settings["retrack"] else "false"
        self.world.configure(f'[sync]\non_user_disabled = "{disabled}"\n')
        text = self.world.config_path.read_text()
        for old in ("retrack_on_removal = true", "retrack_on_removal = false"):
            text = text.replace(old, "")
        self.world.config_path.write_text(
            text.replace("[safety]\n", f"[safety]\nretrack_on_removal = {retrack}\n", 1)
        )

    def step(self, action: str, i: int) -> None:
        t, person, w = self.world.tenant, self.people[i], self.world
        groups = {"dnt": w.dnt, "delete": w.delete, "child": self.child}
        verb, _, which = action.partition("-")
        if verb == "join" and t.live_user(person) is not None:
            t.add_member(groups[which], person)
        elif verb == "leave":
            if person in t.groups[groups[which]].members:
                t.remove_member(groups[which], person)
        elif action == "nest":
            t.add_member(w.dnt, self.child)
        elif action == "unnest":
            if self.child in t.groups[w.dnt].members:
                t.remove_member(w.dnt, self.child)
        elif action in ("delete", "restore"):
            (t.delete_user if action == "delete" else t.restore_user)(person)
        elif action in ("disable", "enable"):
            t.set_account_enabled(person, action == "enable")
        elif action == "report":
            w.ingest(self._report(i), now=self.now())
        elif verb == "toggle":
            self.toggle(which)
            return  # the next cycle re-examines every object under the new settings
        elif action == "track":
            main(["--config", str(w.config_path), "users", "track", f"p{i}@contoso.com"])
        else:
            self.sync()
            return
        _queued_sees_everything(w, self.now())
        _parts_plan_the_whole(w, self.now())


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_cycle_from_the_queue_sees_what_every_object_shows(
    backend: str, make_store_url: Any, tmp_path: Path
) -> None:
    examples = 15 if backend == "sqlite" else 5

    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(STEPS)
    @example(DISABLED_THEN_IGNORED)
    @example(LEFT_WHILE_NO_RETRACK)
    def check(steps: list[Step]) -> None:
        url = make_store_url(backend)
        migrated = Store(url, check_schema=False)
        migrated.upgrade()
        migrated.engine.dispose()
        tmp = tmp_path / uuid.uuid4().hex[:8]
        tmp.mkdir()
        with contextmanager(make_world)(tmp, url) as world:
            run = _Run(world, tmp)
            run.toggle("disabled")
            run.sync()
            for action, i in steps:
                run.step(action, i)
            run.sync()

    check()


def test_a_process_on_older_settings_leaves_the_queue_alone(world: World) -> None:
    """A daemon not yet reloaded (retrack_on_removal off) settles after an admin's run on
    the new settings (on) queued a departed member: the member stays queued, and the next
    cycle on the new settings tracks them again (review finding: two processes)."""
    dana = world.tenant.add_user("dana@contoso.com")
    world.ingest(report("CONTOSO\\dana", "PC", upn="dana@contoso.com"))
    world.tenant.add_member(world.dnt, dana)
    world.configure("")
    text = world.config_path.read_text().replace(
        "[safety]\n", "[safety]\nretrack_on_removal = false\n"
    )
    world.config_path.write_text(text)
    old = world.config()
    world.sync(later(1))
    world.tenant.remove_member(world.dnt, dana)
    world.sync(later(2))  # not tracked again: retrack_on_removal is off
    world.config_path.write_text(
        text.replace("retrack_on_removal = false", "retrack_on_removal = true")
    )
    new = world.config()
    scope = lambda: world.store.unit_of_work(later(3))  # noqa: E731
    check_queue(scope, new, full=False)  # the admin's run on the new settings, before its plan
    with world.store.unit_of_work(later(3)) as uow:
        assert changes.settle(uow, queue_rules(old)) == 0  # the daemon, still on the old ones
    result = world.sync(later(4))
    assert result.applied["retrack"] == 1
    with world.store.reading() as s:
        assert s.scalar(select(UserRow.tracking)) == "tracked"
