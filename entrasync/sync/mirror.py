"""Applying Graph delta rounds to the Entra mirror (the read step's rules; the rows are
written by `entrasync.store.mirror`).

Graph is never read inside a store transaction: each page is applied in its own short
transaction as it arrives, and a round's new delta links are stored only after its last page
(with the full-round diff). A page that changes the mirror clears its stream's link in the
same transaction (`forget_link`), so a round cut short is followed by a full round of that
stream: replaying the old link would not do, as it reports only net changes since then. A full
round (first run or resync) is diffed against the mirror: users not seen are marked deleted,
edges not seen are removed — the increments of a resync are never trusted on their own.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from entrasync.domain.entra import (
    GroupPage,
    UserPage,
    reachable_groups,
)
from entrasync.domain.evidence import MergeMaps
from entrasync.store import groups as group_rows
from entrasync.store import mirror as rows
from entrasync.store.session import Session
from entrasync.store.sync_state import forget_link


@dataclass
class RoundStats:
    users_changed: int = 0
    users_removed: int = 0
    membership_changes: int = 0
    full: bool = False
    resync: bool = False


def apply_user_page(
    session: Session, page: UserPage, maps: MergeMaps, now: datetime, stats: RoundStats
) -> None:
    """One page of a users round (its own short transaction in a cycle)."""
    stats.full |= page.full
    stats.resync |= page.resync
    if page.users or page.removals:
        forget_link(session, page.stream)
    if page.users:
        rows.upsert_users(session, page.users, maps, now)
        stats.users_changed += len(page.users)
    removed = [r.id for r in page.removals]
    if removed:
        rows.mark_users_deleted(session, removed, now)
    stats.users_removed += len(removed)


def finish_user_round(session: Session, stats: RoundStats, now: datetime) -> None:
    """After the last page of a full round: everyone seen was stamped with `now`; the rest
    is gone."""
    if stats.full:
        stats.users_removed += rows.mark_unseen_users_deleted(session, now)


@dataclass
class GroupRoundStats(RoundStats):
    deleted_groups: set[str] = field(default_factory=set)
    seen_groups: set[str] = field(default_factory=set)
    full_groups: set[str] = field(default_factory=set)  # covered by a full round
    names: dict[str, str] = field(default_factory=dict)
    # Per full stream: the id its edges are stamped with as they are seen
    # (entra_members.seen_round), and the groups the stream covers; after the last page the
    # covered groups lose the edges without the stamp.
    full_rounds: dict[str, int] = field(default_factory=dict)
    covered: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # The watched groups, those suspect when the round began, and the direct members in
    # the mirror of each group whose judgement needs them (read fully, reported deleted, or
    # suspect and mentioned), counted before the round's first change to it. Other groups
    # are not counted: a silent or normal incremental read is judged without them, so a
    # cycle does not count every member of the watched groups.
    watched: frozenset[str] = frozenset()
    suspect: frozenset[str] = frozenset()
    before: dict[str, int] = field(default_factory=dict)
    # The user edges this round added or removed, and whether any other change could move
    # a watched group's effective membership (nesting added or removed, a removal of an
    # unknown kind): the watched rows follow the first alone unless the second is set.
    user_changes: set[tuple[str, str]] = field(default_factory=set)
    nesting_moved: bool = False

    def note(self, page: GroupPage) -> None:
        """What the page says about the round, before its changes are applied."""
        self.full |= page.full
        self.resync |= page.resync
        if page.full and (page.first or page.stream not in self.full_rounds):
            # a stream that starts over (a resync inside the round) stamps with a new id
            self.full_rounds[page.stream] = secrets.randbits(62)
        if page.full:
            self.full_groups.update(page.groups)
        self.seen_groups.update(page.seen_groups)
        self.names.update(page.names)
        self.covered[page.stream] = page.groups
        self.deleted_groups.update(page.deleted_groups)
        self.membership_changes += len(page.changes)
        if self.full:  # every watched group is re-derived: no user is followed alone
            self.user_changes.clear()
        for change in page.changes:
            if change.member_kind == "user":
                if not self.full:
                    self.user_changes.add((change.group_id, change.member_id))
            elif change.member_kind == "group" or change.removed:
                self.nesting_moved = True


def apply_group_page(
    session: Session, page: GroupPage, now: datetime, stats: GroupRoundStats
) -> None:
    """One page of a groups round (its own short transaction in a cycle). A group's
    members may arrive over several pages in any order; additions are idempotent and a
    removal deletes only its own edge, so replays and reordering converge."""
    if page.changes or page.deleted_groups:
        forget_link(session, page.stream)
    _count_before(session, page, stats)
    stats.note(page)
    for change in page.changes:
        if change.removed:
            rows.remove_edge(session, change.group_id, change.member_id)
    stamp = stats.full_rounds[page.stream] if page.full else None
    rows.add_edges(session, [c for c in page.changes if not c.removed], now, stamp)
    for group in page.deleted_groups:
        rows.drop_group_edges(session, group)


def _count_before(session: Session, page: GroupPage, stats: GroupRoundStats) -> None:
    mentioned = {c.group_id for c in page.changes}.union(page.seen_groups) & stats.suspect
    mentioned.update(page.deleted_groups, page.groups if page.full else ())
    new = (mentioned & stats.watched) - stats.before.keys()
    if new:
        stats.before.update(rows.direct_counts(session, sorted(new)))


def finish_group_round(session: Session, stats: GroupRoundStats) -> None:
    """After the last page: edges of a full stream's groups that were not seen are gone."""
    for stream, stamp in stats.full_rounds.items():
        rows.remove_unseen(session, stats.covered.get(stream, ()), stamp)


@dataclass
class WatchedUpdate:
    added: int = 0
    removed: int = 0


def update_watched(
    session: Session, roots: Mapping[str, list[str]], suspect: set[str], now: datetime
) -> WatchedUpdate:
    """Materialise the effective (transitive) membership of the groups in `roots`, one row
    per group and member, in SQL (store/groups.py `derive_watched`; the nesting alone is
    read here); continuing members keep `first_seen_at`. The rows of a `suspect` group are
    frozen: left as they are until it reads normally or is accepted."""
    result = WatchedUpdate()
    nesting = rows.mirror_edges(session, member_type="group")
    for kind, groups in roots.items():
        for root in (g for g in groups if g not in suspect):
            inside = sorted(reachable_groups(nesting, [root]))
            added, removed = group_rows.derive_watched(session, kind, root, inside, now)
            result.added += added
            result.removed += removed
    return result


def follow_user_changes(
    session: Session,
    roots: Mapping[str, list[str]],
    changes: set[tuple[str, str]],
    suspect: set[str],
    now: datetime,
) -> WatchedUpdate:
    """`update_watched` for a round that only added or removed users (no nesting moved, no
    group's role or state): only the users whose edges changed are looked at, so the cost
    follows the changes, not the size of the watched groups. A user stays a member of a
    root while any group nested in it (or the root) still has them."""
    result = WatchedUpdate()
    nesting = rows.mirror_edges(session, member_type="group")
    for kind, groups in roots.items():
        for root in (g for g in groups if g not in suspect):
            inside = reachable_groups(nesting, [root])
            moved = sorted({member for group, member in changes if group in inside})
            if not moved:
                continue
            members = rows.members_of_any(session, sorted(inside), moved)
            added, removed = group_rows.set_watched_subset(session, kind, root, moved, members, now)
            result.added += added
            result.removed += removed
    return result
