"""`entrasync sync --user IDENT`: an on-demand sync of one person, like Entra's "provision
on demand" (the tool an admin reaches for when a privacy request says "now").

Read: the person is looked up in Graph directly (`GET /users/{id | upn}` with the delta
round's `$select`) and their membership of the watched groups asked with `checkMemberGroups`
(transitive, like the groups), before anything is written. Then, in one short transaction,
the mirror learns what a delta round would have told it about this person: the user item,
their direct edges (corrected from Graph's answer, see domain/one_user.py), and their
watched-group memberships (a continuing one keeps `first_seen_at`: the purge delay runs from
it). Plan: the cycle's planner on the slice of the facts about this person. Guard and apply:
as a cycle does (thresholds, suspect groups, purges confirmed with Graph right before they
run, one transaction and audit record per action), recorded as a run of its own kind
(`sync-user`), which never counts as a completed cycle.

Nothing is written when the person cannot be read: a 404 changes nothing (one read cannot
tell a deleted account from a renamed one or from replication delay; `sync.on_user_deleted`
acts when the delta round reports the deletion), and Graph unreachable is exit 69.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from entrasync.config import Config
from entrasync.domain.entra import EntraUser, MembershipChange, MembershipEdge
from entrasync.domain.evidence import MergeMaps
from entrasync.domain.one_user import Person, groups_to_check, membership_fix, watched_rows
from entrasync.domain.status import RunStatus
from entrasync.errors import EntrasyncError, GraphUnavailable, NotFound
from entrasync.graph import GraphClient
from entrasync.store import changes, runs
from entrasync.store import groups as group_rows
from entrasync.store import mirror as mirror_rows
from entrasync.store import one_user as person_rows
from entrasync.store.db import Store
from entrasync.store.one_user import Known, Membership
from entrasync.store.session import Session
from entrasync.store.uow import UnitOfWork
from entrasync.sync.apply import ActionApplier
from entrasync.sync.cycle import Clock, CycleResult, GraphFactory, finish_run, start_run, wall_clock
from entrasync.sync.execute import apply_whole, held_kinds
from entrasync.sync.groups import configured_groups
from entrasync.sync.read import plan_now

_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
# `users show`'s kind prefixes (queries.find_user): those Graph can address, and the others.
_GRAPH_PREFIXES = ("upn", "entra")
_STORE_PREFIXES = ("id", "email", "employee_id", "logon")


@dataclass(frozen=True)
class PersonRead:
    """What Graph said about the person, read before anything is written."""

    ident: str
    user: EntraUser
    found_by: str  # the key Graph answered for (an object id or a UPN)
    store_user_id: int | None  # the record IDENT named, when it is this person's
    # The record IDENT named when it is linked to another Entra user (UPN reuse): not this
    # person, left to the cycle; (record, its Entra object).
    other_record: tuple[int, str] | None
    roots: dict[str, list[str]]  # trusted watched groups by kind (suspect ones left out)
    checked: frozenset[str]  # groups asked about: trusted roots and their nested groups
    member_of: frozenset[str]  # those Graph says the person is in (transitively)
    suspect: dict[str, str]  # configured watched groups whose read is suspect -> why
    group_edges: list[MembershipEdge] = field(default_factory=list)

    @property
    def person(self) -> Person:
        ids = frozenset({self.store_user_id} if self.store_user_id is not None else ())
        return Person(self.user.id, ids)


@dataclass
class UserSyncResult:
    cycle: CycleResult
    read: PersonRead
    memberships: list[Membership]  # after the sync (a suspect group's frozen rows included)
    names: dict[str, str]  # group id -> display name
    record: int | None  # the store record linked to the person afterwards, if any


def sync_user(
    store: Store,
    config: Config,
    graph_factory: GraphFactory,
    ident: str,
    now: datetime,
    *,
    dry_run: bool = False,
    clock: Clock = wall_clock,
    run_id: str | None = None,
) -> UserSyncResult:
    """Read, plan, guard and apply for one person (`dry_run`: plan only, write nothing)."""
    run_id = run_id or str(uuid.uuid4())
    with graph_factory() as graph:
        read = read_person(store, graph, config, ident)
        if dry_run or config.safety.dry_run:
            result = _dry_run(store, config, read, now, run_id)
            result.cycle.graph_requests = graph.counters.total
            return result
        start_run(store, run_id, runs.RunKind.USER, now)
        try:
            result = _sync(store, config, graph, read, now, run_id)
        except EntrasyncError as exc:
            failed = runs.RunOutcome(
                RunStatus.FAILED, graph_requests=graph.counters.total, message=str(exc)
            )
            finish_run(store, run_id, failed, clock)
            raise
        result.cycle.graph_requests = graph.counters.total
    finish_run(store, run_id, _outcome(result), clock)
    return result


def read_person(store: Store, graph: GraphClient, config: Config, ident: str) -> PersonRead:
    """The person and their watched-group memberships, from Graph, nothing written."""
    with store.reading() as session:
        known = person_rows.known(session, ident)
        _, suspect_rows = group_rows.group_states(session)
        edges = person_rows.group_edges(session)
    roots = configured_groups(config)
    suspect = {g: why for g, why in suspect_rows.items() if any(g in gs for gs in roots.values())}
    trusted = {kind: [g for g in groups if g not in suspect] for kind, groups in roots.items()}
    user, found_by = _find(graph, ident, known)
    mine = known.linked_object in (None, user.id)
    checked = groups_to_check(edges, [g for gs in trusted.values() for g in gs])
    answer = graph.check_member_groups([user.id], sorted(checked)).get(user.id)
    if answer is None:
        raise GraphUnavailable(
            f"checking the watched-group memberships of {ident}: Graph did not answer "
            "checkMemberGroups (throttled or failing); nothing was changed"
        )
    return PersonRead(
        ident=ident,
        user=user,
        found_by=found_by,
        store_user_id=known.user_id if mine else None,
        other_record=None if mine or known.user_id is None else _other(known),
        roots=trusted,
        checked=frozenset(checked),
        member_of=answer,
        suspect=suspect,
        group_edges=edges,
    )


def _other(known: Known) -> tuple[int, str]:
    assert known.user_id is not None and known.linked_object is not None
    return known.user_id, known.linked_object


def _graph_keys(ident: str, known: Known) -> list[str]:
    """Where to look the person up, in order: IDENT itself when Graph can address it (an
    object id or a UPN: Graph's current name wins), then what the store knows."""
    text = ident.strip()
    kind, sep, rest = text.partition(":")
    if sep and kind.lower() in _STORE_PREFIXES:
        text = ""  # `email:…`, `logon:…`: the store's kinds, which Graph does not address
    elif sep and kind.lower() in _GRAPH_PREFIXES:
        text = rest
    direct = [text] if "@" in text or _GUID.fullmatch(text) else []
    return list(dict.fromkeys([*direct, *known.graph_keys]))


def _find(graph: GraphClient, ident: str, known: Known) -> tuple[EntraUser, str]:
    keys = _graph_keys(ident, known)
    for key in keys:
        user = graph.get_user(key)
        if user is not None:
            return user, key
    asked = ", ".join(keys)
    if known.user_id is not None and not keys:
        raise NotFound(
            f"{ident!r} (store record {known.user_id}) cannot be looked up in Entra ID: the "
            "record is not linked to an Entra user, has no UPN, and no mirrored Entra user "
            "carries its identifiers; give the person's UPN or Entra object id. Nothing was "
            "changed"
        )
    if known.user_id is None:
        raise NotFound(
            f"no user matches {ident!r}: not in the store (try a UPN, email, employee id, "
            f"logon, store id or Entra object id) and not in Entra ID (asked Graph for: "
            f"{asked or 'nothing it can address'}); nothing was changed"
        )
    raise NotFound(
        f"{ident!r} (store record {known.user_id}) is not in Entra ID: Graph answered 404 "
        f"for {asked}. Nothing was changed: one read cannot tell a deleted account from a "
        "renamed one or from replication delay; the scheduled cycle applies "
        "sync.on_user_deleted when the users delta round reports the deletion"
    )


def _write_mirror(uow: UnitOfWork, read: PersonRead, config: Config) -> None:
    """What a delta round would have told the mirror about this person, in one transaction."""
    session, now, oid = uow.session, uow.now, read.user.id
    maps = MergeMaps(config.merge.domain_map, config.merge.netbios_map)
    mirror_rows.upsert_users(session, [read.user], maps, now)
    parents = person_rows.parent_groups(session, oid)
    fix = membership_fix(read.group_edges, read.checked, read.member_of, parents)
    person_rows.drop_edges(session, oid, fix.drop)
    mirror_rows.add_edges(session, [MembershipChange(g, oid, "user") for g in sorted(fix.add)], now)
    trusted = [g for groups in read.roots.values() for g in groups]
    wanted = watched_rows(read.roots, read.member_of)
    person_rows.set_watched_of(session, oid, wanted, trusted, now)
    changes.enqueue(session, [oid])


def _sync(
    store: Store, config: Config, graph: GraphClient, read: PersonRead, now: datetime, run_id: str
) -> UserSyncResult:
    with store.unit_of_work(now, run_id=run_id) as uow:
        _write_mirror(uow, read, config)
    with store.reading() as session:
        the_plan, total = plan_now(session, config, now, read.person)
    cycle = CycleResult(run_id, RunStatus.OK, the_plan, suspect=dict(read.suspect))
    applier = ActionApplier(store, config, run_id, now)
    if apply_whole(applier, graph, the_plan, total, cycle) or read.suspect:
        cycle.status = RunStatus.HELD
    with store.unit_of_work(now, run_id=run_id, account=config.account, notify=config.notify):
        pass  # the settings + compliance tail, as after a cycle
    with store.reading() as session:
        return _result(session, cycle, read)


def _dry_run(
    store: Store, config: Config, read: PersonRead, now: datetime, run_id: str
) -> UserSyncResult:
    """The same writes and plan in one transaction that is rolled back: nothing changes."""
    with store.unit_of_work(now) as uow:
        _write_mirror(uow, read, config)
        uow.session.flush()
        the_plan, total = plan_now(uow.session, config, now, read.person)
        cycle = CycleResult(run_id, RunStatus.DRY_RUN, the_plan, suspect=dict(read.suspect))
        held = held_kinds(config, cycle.tally.count, total)
        cycle.held.update({k.value: cycle.tally.count[k] for k in held})
        result = _result(uow.session, cycle, read)
        uow.discard()
    return result


def _result(session: Session, cycle: CycleResult, read: PersonRead) -> UserSyncResult:
    names, _ = group_rows.group_states(session)
    return UserSyncResult(
        cycle=cycle,
        read=read,
        memberships=person_rows.watched_of(session, read.user.id),
        names=names,
        record=person_rows.linked_record(session, read.user.id),
    )


def _outcome(result: UserSyncResult) -> runs.RunOutcome:
    cycle, read = result.cycle, result.read
    about = f"sync of one user: {read.ident} (Entra {read.user.id})"
    return runs.RunOutcome(
        status=RunStatus(cycle.status),
        graph_requests=cycle.graph_requests,
        counts=dict(cycle.applied),
        held=dict(cycle.held),
        message="; ".join([about, *cycle.suspect.values()]),
        suspect=cycle.suspect,
    )
