"""A plan too large to hold: the watched members planned and applied batch by batch.

A first sync (or a full read after a mass change) finds most members of the watched groups
out of line, one action each: held whole, such a plan grows with the tenant. When the cycle
examines every object and the watched groups hold more than `BATCH` objects, the plan is
made in parts, in the order `plan` makes it (domain/planning.py):

* the head: retired identifiers, links and merges (and who stands for each Entra object);
* the watched members, one span of `BATCH` object ids at a time;
* the tail: re-tracking, deleted and disabled accounts, and the scheduled purges that
  nothing keeps any more (cancelled), found from the users each part keeps a purge for.

Thresholds judge the whole plan, so the members are planned twice: first counted (only the
figures and up to `LISTED` actions of each kind to show are kept), then planned again batch
by batch from the store as the parts before left it, each batch applied (or recorded held)
before the next is read. Memory follows the batch, not the tenant. A crash between batches
keeps what was applied and the next cycle plans the rest: every action is derived from
state. A dry run, `approve` and `sync --user` plan at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from entrasync.config import Config
from entrasync.domain.actions import ActionKind
from entrasync.domain.plan_model import LISTED, Facts, Plan, Policy, StoreUser, Tally, keep_listed
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
from entrasync.sync.execute import announce_held, apply_all, held_kinds
from entrasync.sync.read import ReadResult, changed_since, plan_policy
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
    known: frozenset[int]  # users with a purge scheduled by an earlier cycle
    spans: list[Span]
    policy: Policy
    total_users: int

    def tail(self, live: set[int]) -> Plan:
        """The tail, given the users whose purge the parts before keep (`live`)."""
        rest = plan_rest(self.facts, self.policy, self.known)
        kept = live | live_purges(rest) | live_purges(self.head)
        rest.actions.extend(plan_cancellations(self.facts.scheduled, kept, self.policy))
        return rest


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
    known = frozenset(s.user_id for s in gathered.scheduled)
    return Parts(head, resolved, gathered, known, spans, policy, facts.total_users(session))


def apply_in_parts(
    applier: ActionApplier, graph: GraphClient, read: ReadResult, linked: int, parts: Parts
) -> CycleResult:
    tally, listing = _count(applier.store, parts)
    held = held_kinds(applier.config, tally.count, parts.total_users)
    status = RunStatus.HELD if held or read.suspect else RunStatus.OK
    result = CycleResult(applier.run_id, status, listing, read.resync, tally=tally)
    result.suspect, result.full_read = dict(read.suspect), read.full
    if linked:
        result.applied[ActionKind.LINK.value] += linked
    on_hold = Tally()
    for part in planned_parts(applier.store, parts):
        apply_all(applier, graph, [a for a in part.actions if a.kind not in held], result)
        waiting = [a for a in part.actions if a.kind in held]
        if waiting:
            with applier.unit_of_work() as uow:
                held_rows.hold(uow, waiting)
            on_hold.add_actions(waiting)
    if on_hold.count:
        with applier.unit_of_work() as uow:
            announce_held(uow, applier.config, on_hold, parts.total_users)
        result.held.update({k.value: n for k, n in on_hold.count.items()})
    return result


def _count(store: Store, parts: Parts) -> tuple[Tally, Plan]:
    """The first pass: the whole plan's figures, and what is kept of it to show."""
    tally, listing = Tally(), Plan()
    for part in planned_parts(store, parts):
        keep_listed(listing, part, tally)
        tally.add(part)
    return tally, listing


def planned_parts(store: Store, parts: Parts) -> Iterator[Plan]:
    """Head, members span by span (each read afresh when it is its turn), tail."""
    yield parts.head
    live: set[int] = set()
    for span in parts.spans:
        with store.reading() as session:
            watched = facts.watched_members(session, span)
        part = plan_members(watched, parts.policy, parts.resolved, parts.known)
        del watched
        live |= live_purges(part)
        yield part
    yield parts.tail(live)
