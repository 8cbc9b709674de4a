"""A plan too large to hold: the watched members planned and applied batch by batch.

A first sync (or a full read after a mass change) finds most members of the watched groups
out of line, one action each: held whole, such a plan grows with the tenant. When the cycle
examines every object and the watched groups hold more than `BATCH` objects, the plan is
made in parts, in the order `plan` makes it (domain/planning.py):

* the head: retired identifiers, links and merges (and who stands for each Entra object);
* the watched members, one span of `BATCH` object ids at a time;
* the tail: re-tracking, deleted and disabled accounts, and the scheduled purges that
  nothing keeps any more (cancelled), found from the users each part keeps a purge for.

The head is judged and applied first, on its own: it is the only part with merges, and what
they move (a survivor's agents) is what the members are planned from. The rest is judged
whole, so it is planned twice: first counted (only the figures and up to `LISTED` actions of
each kind to show are kept), then planned again span by span from the store as the parts
before left it, each span applied (or recorded held) before the next is read; no guarded kind
runs more than its threshold, however a span planned afresh differs from the count
(`_Budget`). Memory follows the batch, not the tenant. A crash between batches keeps what was
applied and the next cycle plans the rest: every action is derived from state. `approve`
makes the plan in parts too (sync/approve.py); a dry run and `sync --user` plan at once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from itertools import chain

from entrasync.config import Config
from entrasync.domain.actions import ActionKind
from entrasync.domain.plan_model import (
    LISTED,
    Facts,
    Plan,
    PlannedAction,
    Policy,
    StoreUser,
    Tally,
    take,
)
from entrasync.domain.planning import (
    live_purges,
    plan_cancellations,
    plan_head,
    plan_members,
    plan_rest,
)
from entrasync.domain.status import RunStatus
from entrasync.graph import GraphClient
from entrasync.store import facts, membership
from entrasync.store import held as held_rows
from entrasync.store.db import Store
from entrasync.store.membership import Span
from entrasync.store.session import Session
from entrasync.sync.apply import ActionApplier
from entrasync.sync.execute import announce_held, apply_all, apply_whole, held_kinds, limits
from entrasync.sync.read import ReadResult, changed_since, plan_now, plan_policy
from entrasync.sync.result import CycleResult

__all__ = ["BATCH", "LISTED", "Parts", "apply_in_parts", "parts_of", "planned_parts", "stage"]

# Watched Entra objects planned per batch.
BATCH = 20_000


@dataclass(frozen=True)
class Parts:
    """A plan to be made in parts: its head, planned already, and what the rest reads."""

    head: Plan
    resolved: dict[str, StoreUser]  # Entra object -> the record that will stand for it
    facts: Facts  # every fact but the watched members (the tail's, the scheduled purges)
    spans: list[Span]
    policy: Policy
    total_users: int

    @cached_property
    def known(self) -> frozenset[int]:
        """Users with a purge scheduled by an earlier cycle."""
        return frozenset(s.user_id for s in self.facts.scheduled)

    def tail(self, live: set[int]) -> Plan:
        """The tail, given the users whose purge the parts before keep (`live`)."""
        rest = plan_rest(self.facts, self.policy, self.known)
        kept = live | live_purges(rest) | live_purges(self.head)
        rest.actions.extend(plan_cancellations(self.facts.scheduled, kept, self.policy))
        return rest


def plan_or_parts(store: Store, config: Config, now: datetime) -> Parts | tuple[Plan, int]:
    """What the cycle and `approve` plan from: the parts of the plan (`stage`), or the
    whole plan with the live records it counts thresholds from (`plan_now`). One reading
    snapshot, closed before anything is applied."""
    with store.reading() as session:
        parts = stage(session, config, now)
        return parts if parts is not None else plan_now(session, config, now)


def stage(session: Session, config: Config, now: datetime) -> Parts | None:
    """The parts of this cycle's plan; None when it is planned whole: the cycle examines
    only the queued objects, or the watched groups hold no more than one batch."""
    if not membership.examines_every(session):
        return None
    return parts_of(session, config, now, BATCH)


def parts_of(session: Session, config: Config, now: datetime, batch: int) -> Parts | None:
    """The plan in parts of `batch` watched objects; None when one part would hold them."""
    spans = membership.watched_spans(session, batch)
    if len(spans) < 2:
        return None
    gathered = facts.gather(
        session,
        changed_since=changed_since(session, now),
        sync=config.sync,
        examine=membership.Examine.EVERY,
        watched=False,
    )
    policy = plan_policy(config, now, session)
    head, resolved = plan_head(gathered, policy)
    return Parts(head, resolved, gathered, spans, policy, facts.total_users(session))


def apply_in_parts(
    applier: ActionApplier, graph: GraphClient, read: ReadResult, linked: int, parts: Parts
) -> CycleResult:
    """The head first, judged and applied on its own (the only part with merges, so its
    counts are whole; what the merges move is then what the members are planned from); then
    the members and the tail counted, judged, and applied part by part within `_Budget`."""
    config, total = applier.config, parts.total_users
    result = CycleResult.started(applier.run_id, RunStatus.OK, read, linked)
    head_held = apply_whole(applier, graph, parts.head, total, result)
    listing, tally = Plan(), Tally()
    for part in chain([parts.head], planned_parts(applier.store, parts)):  # counted first
        take(listing, tally, part)
    rest = tally.count - Tally.of(parts.head).count  # merges are the head's alone
    budget = _Budget(limits(config, total), held_kinds(config, rest, total), total)
    if budget.held:  # announced before any of its actions is recorded held
        with applier.unit_of_work() as uow:
            announce_held(uow, config, tally.only(budget.held), total)
    for part in planned_parts(applier.store, parts):
        _apply_part(applier, graph, part, budget, result)
    result.plan, result.tally = listing, tally
    if head_held or budget.held or read.suspect:
        result.status = RunStatus.HELD
    return result


@dataclass
class _Budget:
    """The guarded kinds held (judged on the counted plan), and what each other guarded kind
    may still apply: a part planned afresh can hold more than was counted (agents reported,
    an admin acted meanwhile), and no kind ever runs more than its threshold in one cycle.
    A kind found over it here is held from that part on (`late`)."""

    limits: dict[ActionKind, int]
    held: set[ActionKind]
    total: int  # the live records the limits are counted from
    late: set[ActionKind] = field(default_factory=set)
    spent: Counter[ActionKind] = field(default_factory=Counter)

    def split(
        self, actions: list[PlannedAction]
    ) -> tuple[list[PlannedAction], list[PlannedAction]]:
        """(to apply, to hold) of a part's actions."""
        wanted = Counter(a.kind for a in actions if a.kind in self.limits)
        over = {
            k
            for k, n in wanted.items()
            if k not in self.held and self.spent[k] + n > self.limits[k]
        }
        self.held |= over
        self.late |= over
        run = [a for a in actions if a.kind not in self.held]
        self.spent.update(a.kind for a in run if a.kind in self.limits)
        return run, [a for a in actions if a.kind in self.held]


def _apply_part(
    applier: ActionApplier, graph: GraphClient, part: Plan, budget: _Budget, result: CycleResult
) -> None:
    run, waiting = budget.split(part.actions)
    apply_all(applier, graph, run, result)
    if not waiting:
        return
    late = [a for a in waiting if a.kind in budget.late]
    with applier.unit_of_work() as uow:
        held_rows.hold(uow, waiting)
        if late:  # held here, not when the plan was counted: announced with its rows
            announce_held(uow, applier.config, Tally.of(Plan(late)), budget.total)
    result.held.update(a.kind.value for a in waiting)


def planned_parts(store: Store, parts: Parts) -> Iterator[Plan]:
    """After the head: the members span by span (each read afresh when it is its turn),
    then the tail."""
    live: set[int] = set()
    for span in parts.spans:
        with store.reading() as session:
            watched = facts.watched_members(session, span)
        part = plan_members(watched, parts.policy, parts.resolved, parts.known)
        del watched
        live |= live_purges(part)
        yield part
    yield parts.tail(live)
