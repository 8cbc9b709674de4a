"""Read → plan, written once: Graph's delta rounds into the mirror, then the plan from the
store's state. Used by the cycle, its dry run (`plan`) and `approve`.

Graph is read between transactions: each page is applied in its own short unit of work, so
the store stays writable while Graph is slow or down. A dry run reads Graph to the end
first, then applies the read to a scratch copy of the store (store/overlay.py): it writes
nothing, not even the delta links, and works on a read-only store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, Protocol, TypeVar

from entrasync.config import Config
from entrasync.domain.entra import GroupPage, UserPage, reachable_groups
from entrasync.domain.evidence import MergeMaps
from entrasync.domain.linking import sure_links
from entrasync.domain.one_user import Person, plan_person
from entrasync.domain.planning import Plan, Policy, plan
from entrasync.graph import GraphClient, child_group_id
from entrasync.store import changes, facts, linking, membership, runs, sync_state
from entrasync.store import groups as group_rows
from entrasync.store import mirror as mirror_rows
from entrasync.store.actions import link_users
from entrasync.store.db import Store
from entrasync.store.membership import Examine
from entrasync.store.overlay import open_overlay
from entrasync.store.session import Session
from entrasync.store.uow import UnitOfWork
from entrasync.sync import mirror
from entrasync.sync.crashpoints import crashpoint
from entrasync.sync.groups import configured_groups, judge
from entrasync.sync.prefetch import read_ahead

log = logging.getLogger("entrasync.sync")


@dataclass(frozen=True)
class ReadResult:
    resync: bool
    suspect: dict[str, str]  # watched group id -> why its read is not trusted
    full: bool = False  # a periodic full read (sync.full_resync_every)


@dataclass(frozen=True)
class Planned:
    read: ReadResult
    plan: Plan
    total_users: int  # live records in the store (percentage thresholds count from it)
    linked: int = 0  # records linked ahead of the plan (`link_ahead`)


Scope = Callable[[], AbstractContextManager[UnitOfWork]]
Page = TypeVar("Page", UserPage, GroupPage)
PageCo = TypeVar("PageCo", UserPage, GroupPage, covariant=True)


class Round(Protocol[PageCo]):
    """A delta round as `_apply_read` consumes it: pages, then the links it ended with."""

    def __iter__(self) -> Iterator[PageCo]: ...

    @property
    def delta_links(self) -> dict[str, str]: ...

    @property
    def full_streams(self) -> frozenset[str]: ...

    def abandon(self) -> None: ...


@dataclass(frozen=True)
class _Prefetched(Generic[Page]):
    """A round read to the end before the dry run's scratch copy is made."""

    pages: list[Page]
    delta_links: dict[str, str]
    full_streams: frozenset[str]

    def __iter__(self) -> Iterator[Page]:
        return iter(self.pages)

    def abandon(self) -> None:
        pass  # read to the end already: nothing in flight

    @classmethod
    def read(cls, delta: Round[Page]) -> _Prefetched[Page]:
        pages = list(delta)
        return cls(pages, delta.delta_links, delta.full_streams)


@dataclass(frozen=True)
class _ReadStart:
    """What the rounds need to know before the first Graph request (one snapshot)."""

    links: dict[str, str]
    streams: list[str]  # every stream with a row, with or without a link
    periodic: bool
    roots: dict[str, list[str]]
    watched: list[str]
    children: list[str]
    suspect: frozenset[str]  # watched groups suspect before the round


def read_and_plan(
    store: Store,
    graph: GraphClient,
    config: Config,
    now: datetime,
    *,
    run_id: str | None = None,
    dry_run: bool = False,
) -> Planned:
    """Users round, then groups round, into the mirror; each watched group's read judged and
    its members materialised; then the plan."""
    if not dry_run:
        read, linked = read_entra(store, graph, config, now, run_id=run_id)
        with store.reading() as session:
            return Planned(read, *plan_now(session, config, now), linked=linked)
    start, users, groups = _rounds(store, graph, config, now)
    users, groups = _Prefetched.read(users), _Prefetched.read(groups)
    with open_overlay(store, now) as uow:
        read = _apply_read(lambda: nullcontext(uow), start, users, groups, config, now)
        uow.session.flush()
        # the scratch copy has no triggers to queue changed objects: examine every one
        return Planned(read, *plan_now(uow.session, config, now, examine=Examine.EVERY))


def read_entra(
    store: Store, graph: GraphClient, config: Config, now: datetime, *, run_id: str | None
) -> tuple[ReadResult, int]:
    """The read of a cycle that writes: the rounds into the mirror, then the records linked
    ahead of the plan and the queue of objects it examines checked. Returns the read and
    how many records were linked."""
    start, users, groups = _rounds(store, graph, config, now)
    scope: Scope = lambda: store.unit_of_work(now, run_id=run_id)  # noqa: E731
    read = _apply_read(scope, start, users, groups, config, now)
    crashpoint("mirror-read")
    full = read.resync or read.full or not start.links
    if full:
        with scope() as uow:
            mirror_rows.refresh_statistics(uow.session)
    linked = link_ahead(scope, now)
    check_queue(scope, config, full=full)
    return read, linked


def _rounds(
    store: Store, graph: GraphClient, config: Config, now: datetime
) -> tuple[_ReadStart, Round[UserPage], Round[GroupPage]]:
    with store.reading() as session:
        start = _read_start(session, config, now)
    users: Round[UserPage] = graph.read_users(start.links)
    groups: Round[GroupPage] = graph.read_groups(
        start.watched, start.links, nested=config.groups.nested, children=start.children
    )
    return start, users, groups


# Unlinked records per link-ahead transaction; below this many unlinked records, or Entra
# objects changed since the last completed cycle, the plan links them itself (its memory for
# them is bounded by this number).
LINK_BATCH = 10_000


def link_ahead(scope: Scope, now: datetime) -> int:
    """Link, batch by batch, the records the plan would link anyway (domain/linking.py), so
    that a first sync never holds the whole tenant in memory: memory follows `LINK_BATCH`,
    not the tenant. Each batch is its own transaction; a crash keeps what was linked and the
    next cycle goes on. Returns how many records were linked.

    It runs only when at least `LINK_BATCH` Entra objects changed since the last completed
    cycle (a first sync, one after a first sync cut short, a full round): records that never
    link (local accounts, ambiguous matches) do not cost every steady cycle a pass."""
    with scope() as uow:
        since = changed_since(uow.session, now)
        if linking.objects_changed_since(uow.session, since, LINK_BATCH) < LINK_BATCH:
            return 0
    linked, after = 0, 0
    while True:
        with scope() as uow:
            batch = linking.unlinked_after(uow.session, after, LINK_BATCH)
            if not batch:
                return linked
            linked += _link_batch(uow.session, batch)
        after = batch[-1][0]


def _link_batch(session: Session, batch: list[tuple[int, bool]]) -> int:
    matches = linking.live_matches(session, [uid for uid, _ in batch])
    single = sorted({o for objects in matches.values() if len(objects) == 1 for o in objects})
    tracked = {uid for uid, is_tracked in batch if is_tracked}
    pairs = sure_links(matches, linking.claimants(session, single), tracked)
    return link_users(session, pairs) if pairs else 0


def changed_since(session: Session, now: datetime) -> datetime:
    """Objects changed since the last completed cycle started are re-examined (a crashed
    cycle's changes are not lost); before any completed cycle, every object."""
    last = runs.last_completed_start(session)
    return min(last, now) if last is not None else datetime.min.replace(tzinfo=now.tzinfo)


def queue_rules(config: Config) -> membership.Rules:
    return membership.Rules(config.sync.on_user_disabled, config.safety.retrack_on_removal)


def check_queue(scope: Scope, config: Config, *, full: bool) -> None:
    """On a full read (first sync, resync, periodic), check that every object out of line
    is queued for the plan (store/changes.py), and queue any the triggers missed; after a
    change of the settings that decide what is out of line, queue what they put out of line."""
    rules = queue_rules(config)
    with scope() as uow:
        uow.lock()  # the rules read are the rules another writer's `settle` goes by
        if not (full or changes.rules_changed(uow.session, rules)):
            return
        missed = changes.reconcile(uow, rules)
    if missed and full:
        log.warning(
            "%d Entra objects were out of line without being queued for the plan "
            "(a change bypassed the store's triggers); queued now",
            missed,
            extra={"missed": missed},
        )


def plan_now(
    session: Session,
    config: Config,
    now: datetime,
    person: Person | None = None,
    *,
    examine: Examine = Examine.QUEUED,
) -> tuple[Plan, int]:
    """The plan from the store's state, and the live records it counts thresholds from;
    with `person` (`sync --user`), the plan for that person only."""
    gathered = facts.gather(
        session, changed_since=changed_since(session, now), sync=config.sync, examine=examine
    )
    policy = plan_policy(config, now, session)
    the_plan = plan(gathered, policy) if person is None else plan_person(gathered, policy, person)
    return the_plan, facts.total_users(session)


def plan_policy(config: Config, now: datetime, session: Session) -> Policy:
    names, suspect = group_rows.group_states(session)
    return Policy(
        now=now,
        purge_delay=config.safety.purge_delay,
        retrack_on_removal=config.safety.retrack_on_removal,
        merge_enabled=config.merge.enabled,
        agent_merge=config.merge.agent_merge,
        on_user_deleted=config.sync.on_user_deleted,
        on_user_disabled=config.sync.on_user_disabled,
        group_names=names,
        suspect=suspect,
    )


def _read_start(session: Session, config: Config, now: datetime) -> _ReadStart:
    links = sync_state.load_links(session)
    last_full = sync_state.oldest_full_round(session)
    periodic = bool(links) and (
        last_full is None or now - last_full >= config.sync.full_resync_every
    )
    roots = configured_groups(config)
    watched = sorted({g for gs in roots.values() for g in gs})
    edges = mirror_rows.mirror_edges(session, member_type="group")
    children = sorted(reachable_groups(edges, watched) - set(watched))
    return _ReadStart(
        {} if periodic else links,
        sync_state.stream_names(session),
        periodic,
        roots,
        watched,
        children,
        frozenset(group_rows.group_states(session)[1]),
    )


def _apply_read(
    scope: Scope,
    start: _ReadStart,
    users: Round[UserPage],
    groups: Round[GroupPage],
    config: Config,
    now: datetime,
) -> ReadResult:
    maps = MergeMaps(config.merge.domain_map, config.merge.netbios_map)
    user_stats = mirror.RoundStats()
    # While a page is stored, the next one is fetched (sync/prefetch.py); a dry run's rounds
    # are already read to the end. The links are read once the worker has been joined.
    depth = 0 if isinstance(users, _Prefetched) else None
    with read_ahead(users, depth, users.abandon) as user_pages:
        for user_page in user_pages:
            with scope() as uow:
                mirror.apply_user_page(uow.session, user_page, maps, now, user_stats)
    with scope() as uow:
        mirror.finish_user_round(uow.session, user_stats, now)
        sync_state.save_links(uow.session, users.delta_links, now, users.full_streams)
    group_stats = mirror.GroupRoundStats(watched=frozenset(start.watched), suspect=start.suspect)
    depth = 0 if isinstance(groups, _Prefetched) else None
    with read_ahead(groups, depth, groups.abandon) as group_pages:
        for group_page in group_pages:
            with scope() as uow:
                mirror.apply_group_page(uow.session, group_page, now, group_stats)
    with scope() as uow:
        suspect = _finish_groups(uow, start, groups, group_stats, config)
    return ReadResult(user_stats.resync or group_stats.resync, suspect, start.periodic)


def _finish_groups(
    uow: UnitOfWork,
    start: _ReadStart,
    groups: Round[GroupPage],
    stats: mirror.GroupRoundStats,
    config: Config,
) -> dict[str, str]:
    """The groups round's last transaction: its diff and links, the judgement of each
    watched group, and the materialised effective membership."""
    session, now = uow.session, uow.now
    mirror.finish_group_round(session, stats)
    sync_state.save_links(session, groups.delta_links, now, groups.full_streams)
    stale = [
        s for s in start.streams if (g := child_group_id(s)) is not None and g not in start.children
    ]
    sync_state.drop_streams(session, [s for s in stale if s not in groups.delta_links])
    before = _group_states(session)
    suspect = judge(uow, config, stats)
    after = _group_states(session)
    if not _watched_may_change(start, stats, before, after):
        return suspect
    if _only_users_moved(start, stats, before, after):
        mirror.follow_user_changes(session, start.roots, stats.user_changes, set(suspect), now)
        return suspect
    group_rows.drop_unconfigured_members(session, start.watched)
    mirror.update_watched(session, start.roots, set(suspect), now)
    return suspect


GroupStates = dict[str, tuple[str, bool]]  # watched group id -> (role, suspect)


def _only_users_moved(
    start: _ReadStart, stats: mirror.GroupRoundStats, before: GroupStates, after: GroupStates
) -> bool:
    """An incremental round that only added or removed users, with every group's role and
    state as before and as configured: the watched rows follow those users alone
    (`follow_user_changes`). A full round, a deleted group, nesting that moved or a removal
    of unknown kind re-derive every watched group."""
    configured = {g: str(kind) for kind, groups in start.roots.items() for g in groups}
    roles = {g: role for g, (role, _) in before.items()}
    incremental = not (stats.full or stats.resync or stats.deleted_groups or stats.full_rounds)
    return incremental and not stats.nesting_moved and before == after and roles == configured


def _group_states(session: Session) -> GroupStates:
    return {
        g: (row.role, row.suspect is not None) for g, row in group_rows.group_rows(session).items()
    }


def _watched_may_change(
    start: _ReadStart, stats: mirror.GroupRoundStats, before: GroupStates, after: GroupStates
) -> bool:
    """The materialised membership follows the mirror's edges and each watched group's role
    and suspect state, and is written in the same transaction as they are (here, or by
    `groups accept`). When this round changed no edge (a page with changes drops its
    stream's link, so a crash before this point makes the next round a full one) and no
    group's role or state moved, it is already right: a cycle without changes does not
    re-derive every member of the watched groups."""
    configured = {g: str(kind) for kind, groups in start.roots.items() for g in groups}
    edges_moved = stats.membership_changes or stats.full or stats.resync or stats.deleted_groups
    roles = {g: role for g, (role, _) in before.items()}
    return bool(edges_moved or stats.full_rounds) or before != after or roles != configured
