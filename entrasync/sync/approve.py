"""`entrasync approve RUN_ID`: release the actions a safety threshold held in a run.

The held actions are not replayed: the store and Entra are read again, the plan is made
afresh (in parts when the cycle would make it in parts, sync/batches.py), and only the held
actions still in it are applied (purges confirmed with Graph
first, like in a cycle); the others are recorded obsolete.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime

from entrasync.config import Config
from entrasync.domain.audit import SYSTEM_ACTOR, AuditEvent
from entrasync.domain.plan_model import Plan, take
from entrasync.domain.status import RunStatus
from entrasync.errors import NotFound
from entrasync.store import held as held_rows
from entrasync.store import runs
from entrasync.store.db import Store
from entrasync.sync import batches
from entrasync.sync.apply import ActionApplier
from entrasync.sync.cycle import Clock, CycleResult, GraphFactory, finish_run, start_run, wall_clock
from entrasync.sync.execute import apply_all
from entrasync.sync.read import read_entra


def approve(
    store: Store,
    config: Config,
    graph_factory: GraphFactory,
    run_id: str,
    now: datetime,
    actor: str = SYSTEM_ACTOR,
    *,
    clock: Clock = wall_clock,
) -> CycleResult:
    """Re-plan against current state; apply the held actions of `run_id` that are still valid."""
    with store.reading() as session:
        targets = held_rows.waiting(session, run_id)
    if not targets:
        raise NotFound(f"run {run_id} has no held actions waiting for approval")
    new_run = str(uuid.uuid4())
    with graph_factory() as graph:
        read, linked = read_entra(store, graph, config, now, run_id=new_run)
        start_run(store, new_run, runs.RunKind.APPROVE, now)
        result = CycleResult.started(new_run, RunStatus.OK, read, linked)
        applier = ActionApplier(store, config, new_run, now, actor)
        still_valid: set[str] = set()
        for part in _plan(store, config, now):
            take(result.plan, result.tally, part)  # the plan made afresh, to show
            wanted = [a for a in part.actions if a.target in targets]
            still_valid.update(a.target for a in wanted)
            apply_all(applier, graph, wanted, result)
        result.graph_requests = graph.counters.total
    _release(store, config, run_id, new_run, targets, still_valid, actor, now)
    outcome = runs.RunOutcome(
        RunStatus.OK,
        graph_requests=result.graph_requests,
        counts=dict(result.applied),
        resync=result.resync,
        suspect=result.suspect,
    )
    finish_run(store, new_run, outcome, clock)
    return result


def _plan(store: Store, config: Config, now: datetime) -> Iterator[Plan]:
    """The plan from current state, whole, or in parts as the cycle makes it (a held first
    sync of a large tenant): each part is planned once the parts before it were applied."""
    staged = batches.plan_or_parts(store, config, now)
    if not isinstance(staged, batches.Parts):
        yield staged[0]
        return
    yield staged.head
    yield from batches.planned_parts(store, staged)


def _release(
    store: Store,
    config: Config,
    run_id: str,
    new_run: str,
    targets: set[str],
    still_valid: set[str],
    actor: str,
    now: datetime,
) -> None:
    with store.unit_of_work(
        now, actor=actor, run_id=new_run, account=config.account, notify=config.notify
    ) as uow:
        released = held_rows.resolve(uow, run_id, still_valid)
        uow.audit(
            AuditEvent(
                "action.released",
                f"held actions of run {run_id} approved",
                details={"run": run_id, "released": released, "obsolete": len(targets) - released},
            )
        )
