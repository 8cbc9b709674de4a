"""One sync cycle: read → mirror → plan → guard → apply → record the run.

A dry run (`plan`, `sync --dry-run`) reads and plans on a scratch copy of the store, so it
changes nothing — not even the delta links — and works on a read-only store.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from entrasync.config import Config
from entrasync.domain.status import RunStatus
from entrasync.errors import EntrasyncError
from entrasync.graph import GraphClient
from entrasync.store import changes, runs
from entrasync.store.db import Store
from entrasync.sync import batches
from entrasync.sync.apply import ActionApplier
from entrasync.sync.execute import apply_whole, held_kinds
from entrasync.sync.read import (
    Planned,
    ReadResult,
    queue_rules,
    read_and_plan,
    read_entra,
)
from entrasync.sync.result import CycleResult

__all__ = [
    "Clock",
    "CycleResult",
    "GraphFactory",
    "finish_run",
    "run_cycle",
    "start_run",
    "wall_clock",
]

GraphFactory = Callable[[], GraphClient]
Clock = Callable[[], datetime]


def wall_clock() -> datetime:
    return datetime.now(UTC)


def run_cycle(
    store: Store,
    config: Config,
    graph_factory: GraphFactory,
    now: datetime,
    *,
    dry_run: bool = False,
    clock: Clock = wall_clock,
    run_id: str | None = None,
) -> CycleResult:
    """`now` is the cycle's time (what it plans and records against); `clock` says when the
    run finished; `run_id` names the run (the daemon passes one, to find the run again when
    a stop cuts the cycle short), a new id by default."""
    run_id = run_id or str(uuid.uuid4())
    with graph_factory() as graph:
        if dry_run or config.safety.dry_run:
            return _dry_run(store, config, graph, now, run_id)
        start_run(store, run_id, runs.RunKind.SYNC, now)
        try:
            result = _cycle(store, config, graph, now, run_id)
        except EntrasyncError as exc:
            failed = runs.RunOutcome(
                RunStatus.FAILED, graph_requests=graph.counters.total, message=str(exc)
            )
            finish_run(store, run_id, failed, clock)
            raise
        result.graph_requests = graph.counters.total
    finish_run(store, run_id, result.outcome(), clock)
    return result


def _dry_run(
    store: Store, config: Config, graph: GraphClient, now: datetime, run_id: str
) -> CycleResult:
    planned = read_and_plan(store, graph, config, now, dry_run=True)
    result = CycleResult.of(run_id, RunStatus.DRY_RUN, planned)
    result.graph_requests = graph.counters.total
    held = held_kinds(config, result.tally.count, planned.total_users)
    result.held.update({k.value: result.tally.count[k] for k in held})
    return result


def _cycle(
    store: Store, config: Config, graph: GraphClient, now: datetime, run_id: str
) -> CycleResult:
    read, linked = read_entra(store, graph, config, now, run_id=run_id)
    result = _plan_and_apply(ActionApplier(store, config, run_id, now), graph, read, linked)
    with store.unit_of_work(
        now, run_id=run_id, account=config.account, notify=config.notify
    ) as uow:
        # the settings + compliance tail, once, after every action of the run; and the
        # objects now in line leave the queue the next plan examines
        changes.settle(uow, queue_rules(config))
    return result


def _plan_and_apply(
    applier: ActionApplier, graph: GraphClient, read: ReadResult, linked: int
) -> CycleResult:
    """The plan held whole, or (a first sync, say) made and applied in parts
    (sync/batches.py)."""
    staged = batches.plan_or_parts(applier.store, applier.config, applier.now)
    if isinstance(staged, batches.Parts):
        return batches.apply_in_parts(applier, graph, read, linked, staged)
    the_plan, total = staged
    planned = Planned(read, the_plan, total, linked)
    result = CycleResult.of(applier.run_id, RunStatus.OK, planned)
    if apply_whole(applier, graph, the_plan, total, result) or read.suspect:
        result.status = RunStatus.HELD
    return result


def start_run(store: Store, run_id: str, kind: runs.RunKind, now: datetime) -> None:
    with store.unit_of_work(now, run_id=run_id) as uow:
        runs.start(uow, run_id, kind)


def finish_run(store: Store, run_id: str, outcome: runs.RunOutcome, clock: Clock) -> None:
    """The run's outcome, stamped with the clock's reading now (never before its start)."""
    with store.unit_of_work(clock(), run_id=run_id) as uow:
        runs.finish(uow, run_id, outcome)
