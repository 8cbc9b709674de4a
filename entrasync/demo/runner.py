"""`entrasync demo`, end to end: emulator, store, reports, `plan`, one cycle, `audit verify`.

The runner knows nothing about the terminal: it tells a `Reporter` when each step begins and
ends and returns a `DemoResult` with every number the summary shows, each read back from the
store (not predicted from the scenario), so what the admin sees is what the store holds.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from entrasync.demo import scenario as story
from entrasync.demo.summary import (
    DemoResult,
    Outcome,
    Snapshot,
    merged_objects,
    outcomes,
    pending_ids,
    resolved,
    snapshot,
    upns_of,
)
from entrasync.demo.world import (
    CLIENT_ID,
    Demo,
    QuietReporter,
    Reporter,
    demo_world,
    free_port,
    prepare_directory,
    write_config,
)
from entrasync.services.audit_review import AuditFilter, records, verify
from entrasync.sync.cycle import CycleResult

__all__ = [
    "CLIENT_ID",
    "STEPS",
    "Demo",
    "DemoResult",
    "Outcome",
    "QuietReporter",
    "Reporter",
    "Snapshot",
    "demo_world",
    "free_port",
    "prepare_directory",
    "run_demo",
    "write_config",
]

STEPS = 10  # steps reported by demo_world (3) and run_demo (7), for a progress bar


def _day_one(demo: Demo, steps: Reporter, yesterday: datetime) -> None:
    scene = demo.scene
    steps.begin("Day 1: agents report")
    day_one = demo.ingest(
        story.day_one_reports(scene, yesterday.replace(hour=9, minute=0, second=0)),
        yesterday,
        "demo day 1",
    )
    steps.end(
        f"day 1: {day_one.reports} agents reported {day_one.rows_stored} activity rows "
        f"({scene.purchased} licenses purchased, pending mode on)"
    )
    steps.begin("Day 1: first sync with Entra")
    first = demo.sync(yesterday + timedelta(minutes=5))
    steps.end(
        f"day 1: first sync linked {first.applied.get('link', 0)} store records to their "
        f"Entra users ({first.graph_requests} Graph requests)"
    )


def _day_two(demo: Demo, steps: Reporter, today: datetime) -> None:
    scene, shape = demo.scene, demo.scene.shape
    steps.begin("Day 2: changes in Entra")
    story.migrate(scene)
    steps.end(
        f"day 2 in Entra: {shape.renamed} people renamed {story.OLD_DOMAIN} -> "
        f"{story.NEW_DOMAIN}; {shape.dnt + shape.nested} added to Do Not Track "
        f"({shape.nested} through the nested group); {shape.delete} added to Delete "
        f"({shape.delete_unseen} never logged in); {shape.new_hires} new hires"
    )
    steps.begin("Day 2: agents report")
    morning = today - timedelta(hours=1)
    dupes = demo.ingest(story.duplicate_reports(scene, morning), morning, "demo day 2")
    hires = demo.ingest(story.new_hire_reports(scene, morning), morning, "demo day 2 new hires")
    steps.end(
        f"day 2: the renamed people's agents report the new UPN under NEWCO\\: "
        f"{dupes.users_created} duplicate records, {dupes.users_created - dupes.pending} "
        f"took a license, {dupes.pending} wait in the pending queue; "
        f"{hires.pending} new hires wait there too"
    )


def _plan_and_sync(
    demo: Demo, steps: Reporter, now: Callable[[], datetime]
) -> tuple[CycleResult, CycleResult]:
    steps.begin("entrasync plan")
    planned = demo.sync(now(), dry_run=True)
    steps.plan(planned)
    steps.end(
        f"plan: {planned.tally.actions} actions, {planned.tally.licenses} licenses would be freed"
    )
    steps.begin("entrasync sync")
    cycle = demo.sync(now())
    applied = ", ".join(f"{n} {k}" for k, n in sorted(cycle.applied.items())) or "nothing"
    steps.end(f"sync: run {cycle.run_id} {cycle.status}: applied {applied}")
    return planned, cycle


@dataclass(frozen=True)
class _Audit:
    verified: int
    problem: str | None
    written: dict[str, int]


def _verify_audit(demo: Demo, steps: Reporter, run_id: str) -> _Audit:
    steps.begin("entrasync audit verify")
    checked = verify(demo.store)
    written = Counter(r["action"] for r in records(demo.store, AuditFilter(run_id=run_id)))
    problem = (
        None if checked.problem is None else f"{checked.problem.seq}: {checked.problem.problem}"
    )
    steps.end(
        f"audit verify: {checked.records} records, chain "
        + ("intact" if problem is None else f"BROKEN at {problem}")
    )
    return _Audit(checked.records, problem, dict(sorted(written.items())))


def run_demo(
    demo: Demo,
    reporter: Reporter | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> DemoResult:
    """Day 1, day 2, `plan`, one cycle, `audit verify`: the numbers of the summary."""
    steps: Reporter = reporter or QuietReporter()
    started = time.monotonic()
    today = now()
    _day_one(demo, steps, today - timedelta(days=1))
    _day_two(demo, steps, today)
    before = snapshot(demo.store, now())
    pending_before = pending_ids(demo.store)
    planned, cycle = _plan_and_sync(demo, steps, now)
    after = snapshot(demo.store, now())
    left = resolved(demo.store, pending_before)
    waiting = upns_of(demo.store, pending_ids(demo.store))
    audit = _verify_audit(demo, steps, cycle.run_id)
    merged = merged_objects(demo.store)
    example = next(
        ((p.upn, story.new_upn(p)) for p in demo.scene.renamed if p.object_id in merged), None
    )
    return DemoResult(
        directory=demo.directory,
        config_path=demo.config_path,
        store_path=demo.directory / "store.db",
        store_url=demo.store.url,
        emulator_url=demo.emu.base_url,
        tenant_people=len(demo.scene.tenant.users),
        before=before,
        after=after,
        plan_actions=planned.tally.actions,
        plan_licenses_freed=planned.tally.licenses,
        run_id=cycle.run_id,
        run_status=cycle.status,
        outcomes=outcomes(cycle, pending_before, left),
        pending_waiting=waiting,
        audit_written=audit.written,
        audit_verified=audit.verified,
        audit_problem=audit.problem,
        example_rename=example,
        seconds=time.monotonic() - started,
    )
