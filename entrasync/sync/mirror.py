"""Applying Graph delta rounds to the Entra mirror (store adapter side of the read step).

Graph is never read inside a store transaction: each page is applied in its own short
transaction as it arrives, and a round's new delta links are stored only after its last page
(with the full-round diff). A page that changes the mirror clears its stream's link in the
same transaction (`forget_link`), so a round cut short is followed by a full round of that
stream: replaying the old link would not do, as it reports only net changes since then. A full
round (first run or resync) is diffed against the mirror: users not seen are marked deleted,
edges not seen are removed — the increments of a resync are never trusted on their own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from entrasync.domain.entra import (
    EntraUser,
    GroupPage,
    MembershipEdge,
    UserPage,
    effective_members,
)
from entrasync.domain.evidence import MergeMaps, identity_keys
from entrasync.domain.identity import normalize
from entrasync.store.schema import (
    EntraKeyRow,
    EntraMemberRow,
    EntraUserRow,
    SyncStateRow,
    WatchedMemberRow,
)


def _insert(session: Session, table: Any) -> Any:
    dialect = session.get_bind().dialect.name
    return (pg_insert if dialect == "postgresql" else sqlite_insert)(table)


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
        _upsert_users(session, page.users, maps, now)
        stats.users_changed += len(page.users)
    removed = [r.id for r in page.removals]
    if removed:
        session.execute(
            update(EntraUserRow)
            .where(EntraUserRow.object_id.in_(removed))
            .values(deleted_at=now, updated_at=now)
        )
        # Keys describe live objects only. A full round cannot tell a soft deletion from a
        # permanent one (both are simply absent), so an increment drops the keys of either
        # too, and both ways of learning of a deletion leave the same mirror; a restored
        # user comes back as a whole item and gets its keys again.
        session.execute(delete(EntraKeyRow).where(EntraKeyRow.object_id.in_(removed)))
    stats.users_removed += len(removed)


def finish_user_round(session: Session, stats: RoundStats, now: datetime) -> None:
    """After the last page of a full round: everyone seen was stamped with `now`; the rest
    is gone."""
    if not stats.full:
        return
    gone = select(EntraUserRow.object_id).where(
        EntraUserRow.updated_at < now, EntraUserRow.deleted_at.is_(None)
    )
    session.execute(delete(EntraKeyRow).where(EntraKeyRow.object_id.in_(gone)))
    marked = session.execute(
        update(EntraUserRow)
        .where(EntraUserRow.updated_at < now, EntraUserRow.deleted_at.is_(None))
        .values(deleted_at=now)
    )
    stats.users_removed += int(getattr(marked, "rowcount", 0) or 0)


def _upsert_users(
    session: Session, users: Iterable[EntraUser], maps: MergeMaps, now: datetime
) -> None:
    """Upsert a page of users and rebuild their identity keys. An item may leave out
    properties that did not change (`EntraUser.present`): they keep their mirrored value,
    and the keys are rebuilt from the merged user. Set-based: one read of the page's
    mirrored rows, one upsert, one key delete and one key insert per page. A user sent twice
    (a replay) is merged in order, so the later item wins."""
    users = list(users)
    ids = list(dict.fromkeys(u.id for u in users))
    partial = any(not u.complete for u in users)
    stored = _stored_users(session, ids, everything=partial)
    known = {user_id: previous for user_id, (_, previous) in stored.items()}
    merged: dict[str, EntraUser] = {}
    for item in users:
        base = merged.get(item.id) or (stored[item.id][0] if item.id in stored else None)
        merged[item.id] = item.merged_with(base)
    rows: list[dict[str, Any]] = []
    keys: list[dict[str, Any]] = []
    for user in merged.values():
        previous = list(known.get(user.id) or [])
        old_upn = stored[user.id][0].user_principal_name if user.id in stored else None
        new_upn = normalize(user.user_principal_name) if user.user_principal_name else None
        if old_upn and new_upn and old_upn != new_upn and old_upn not in previous:
            previous.append(old_upn)
        rows.append(
            {
                "object_id": user.id,
                "upn": new_upn,
                "mail": user.mail,
                "proxy_addresses": list(user.proxy_addresses),
                "on_premises_upn": user.on_premises_user_principal_name,
                "on_premises_sam": user.on_premises_sam_account_name,
                "on_premises_domain": user.on_premises_domain_name,
                "employee_id": user.employee_id,
                "display_name": user.display_name,
                "previous_upns": previous,
                "deleted_at": None,
                "updated_at": now,
            }
        )
        keys.extend(
            {"object_id": user.id, "kind": k.kind, "value": k.value, "rank": k.rank}
            for k in identity_keys(user, previous, maps)
        )
    stmt = _insert(session, EntraUserRow)
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=["object_id"],
            set_={c: stmt.excluded[c] for c in rows[0] if c != "object_id"},
        ),
        rows,
    )
    # Keys are only ever written here, with their user row (which is never deleted), so only
    # objects already in the mirror can have keys to replace. Skipping the others matters on
    # PostgreSQL: without column statistics (a fresh store) `object_id IN (…100 ids)` is
    # planned as a sequential scan, and a first round scanned the growing table once per
    # page (quadratic: 200M rows read for 100k users).
    mirrored = [i for i in ids if i in known]
    if mirrored:
        session.execute(delete(EntraKeyRow).where(EntraKeyRow.object_id.in_(mirrored)))
    if keys:
        session.execute(_insert(session, EntraKeyRow).on_conflict_do_nothing(), keys)


def _stored_users(
    session: Session, ids: list[str], everything: bool
) -> dict[str, tuple[EntraUser, list[str] | None]]:
    """The mirrored users among `ids` with their previous UPNs. Only the UPN is read unless
    `everything` (a partial item needs the stored values of what it left out): the common
    bulk round then reads three columns, not ten."""
    columns = [EntraUserRow.object_id, EntraUserRow.upn, EntraUserRow.previous_upns]
    if everything:
        columns += [
            EntraUserRow.mail,
            EntraUserRow.proxy_addresses,
            EntraUserRow.on_premises_upn,
            EntraUserRow.on_premises_sam,
            EntraUserRow.on_premises_domain,
            EntraUserRow.employee_id,
            EntraUserRow.display_name,
        ]
    out: dict[str, tuple[EntraUser, list[str] | None]] = {}
    for row in session.execute(select(*columns).where(EntraUserRow.object_id.in_(ids))):
        if not everything:
            user = EntraUser(row.object_id, user_principal_name=row.upn)
        else:
            user = EntraUser(
                id=row.object_id,
                user_principal_name=row.upn,
                mail=row.mail,
                proxy_addresses=tuple(row.proxy_addresses or ()),
                on_premises_user_principal_name=row.on_premises_upn,
                on_premises_sam_account_name=row.on_premises_sam,
                on_premises_domain_name=row.on_premises_domain,
                employee_id=row.employee_id,
                display_name=row.display_name,
            )
        out[row.object_id] = (user, row.previous_upns)
    return out


@dataclass
class GroupRoundStats(RoundStats):
    deleted_groups: set[str] = field(default_factory=set)
    seen_groups: set[str] = field(default_factory=set)
    full_groups: set[str] = field(default_factory=set)  # covered by a full round
    names: dict[str, str] = field(default_factory=dict)
    # Per full stream: the edges seen so far, and the groups the stream covers. Kept in
    # memory across the round's page transactions; the diff runs after the last page.
    seen_edges: dict[str, set[tuple[str, str]]] = field(default_factory=dict)
    covered: dict[str, tuple[str, ...]] = field(default_factory=dict)


def apply_group_page(
    session: Session, page: GroupPage, now: datetime, stats: GroupRoundStats
) -> None:
    """One page of a groups round (its own short transaction in a cycle). A group's
    members may arrive over several pages in any order; additions are idempotent and a
    removal deletes only its own edge, so replays and reordering converge."""
    if page.changes or page.deleted_groups:
        forget_link(session, page.stream)
    stats.full |= page.full
    stats.resync |= page.resync
    if page.full and page.first:
        stats.seen_edges[page.stream] = set()
    if page.full:
        stats.full_groups.update(page.groups)
    stats.seen_groups.update(page.seen_groups)
    stats.names.update(page.names)
    stats.covered[page.stream] = page.groups
    adds = [c for c in page.changes if not c.removed]
    for change in page.changes:
        if page.full and not change.removed:
            stats.seen_edges.setdefault(page.stream, set()).add((change.group_id, change.member_id))
        if change.removed:
            session.execute(
                delete(EntraMemberRow).where(
                    EntraMemberRow.group_id == change.group_id,
                    EntraMemberRow.member_id == change.member_id,
                )
            )
    if adds:
        session.execute(
            _insert(session, EntraMemberRow).on_conflict_do_nothing(),
            [
                {
                    "group_id": c.group_id,
                    "member_id": c.member_id,
                    "member_type": c.member_kind,
                    "first_seen_at": now,
                }
                for c in adds
            ],
        )
    for group in page.deleted_groups:
        session.execute(delete(EntraMemberRow).where(EntraMemberRow.group_id == group))
        stats.deleted_groups.add(group)
    stats.membership_changes += len(page.changes)


def finish_group_round(session: Session, stats: GroupRoundStats) -> None:
    """After the last page: edges of a full stream's groups that were not seen are gone."""
    for stream, edges in stats.seen_edges.items():
        _remove_unseen(session, stats.covered.get(stream, ()), edges)


def _remove_unseen(session: Session, groups: Iterable[str], seen: set[tuple[str, str]]) -> None:
    for group in groups:
        existing = session.scalars(
            select(EntraMemberRow.member_id).where(EntraMemberRow.group_id == group)
        ).all()
        stale = [m for m in existing if (group, m) not in seen]
        for start in range(0, len(stale), 500):
            session.execute(
                delete(EntraMemberRow).where(
                    EntraMemberRow.group_id == group,
                    EntraMemberRow.member_id.in_(stale[start : start + 500]),
                )
            )


def forget_link(session: Session, stream: str) -> None:
    """A page of `stream` is being applied: until the round's last page stores the new
    link, the stream has none. A replay from the old link reports only the *net* change
    since then, so it could not undo what an applied page did if the object changed back
    meanwhile (removed, then re-added): a round cut short is followed by a full round of
    that stream, diffed against the mirror."""
    session.execute(
        update(SyncStateRow).where(SyncStateRow.stream == stream).values(delta_link=None)
    )


def stream_names(session: Session) -> list[str]:
    """Every stream with a row, with or without a link."""
    return list(session.scalars(select(SyncStateRow.stream)))


def save_links(
    session: Session, links: Mapping[str, str], now: datetime, full: Iterable[str] = ()
) -> None:
    """Store each stream's new link; `full` streams finished a full round now."""
    if not links:
        return
    stmt = _insert(session, SyncStateRow)
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=["stream"],
            set_={"delta_link": stmt.excluded.delta_link, "updated_at": stmt.excluded.updated_at},
        ),
        [{"stream": s, "delta_link": link, "updated_at": now} for s, link in links.items()],
    )
    done = [s for s in full if s in links]
    if done:
        session.execute(
            update(SyncStateRow).where(SyncStateRow.stream.in_(done)).values(full_at=now)
        )


def oldest_full_round(session: Session) -> datetime | None:
    """When the stream with the oldest full round last finished one (None: never)."""
    rows = session.execute(select(SyncStateRow.full_at)).scalars().all()
    if not rows or any(r is None for r in rows):
        return None
    return min(r for r in rows if r is not None)


def load_links(session: Session) -> dict[str, str]:
    return {
        stream: link
        for stream, link in session.execute(select(SyncStateRow.stream, SyncStateRow.delta_link))
        if link
    }


def drop_streams(session: Session, streams: Iterable[str]) -> None:
    names = list(streams)
    if names:
        session.execute(delete(SyncStateRow).where(SyncStateRow.stream.in_(names)))


def mirror_edges(session: Session) -> list[MembershipEdge]:
    return [
        MembershipEdge(g, m, kind)  # type: ignore[arg-type]
        for g, m, kind in session.execute(
            select(EntraMemberRow.group_id, EntraMemberRow.member_id, EntraMemberRow.member_type)
        )
    ]


def direct_counts(session: Session, groups: Iterable[str]) -> dict[str, int]:
    """Direct members of each group in the mirror (0 for a group without edges)."""
    ids = list(groups)
    counts = dict.fromkeys(ids, 0)
    for group, count in session.execute(
        select(EntraMemberRow.group_id, func.count())
        .where(EntraMemberRow.group_id.in_(ids))
        .group_by(EntraMemberRow.group_id)
    ):
        counts[group] = int(count)
    return counts


@dataclass
class WatchedUpdate:
    added: int = 0
    removed: int = 0


def update_watched(
    session: Session,
    roots: Mapping[str, list[str]],
    edges: list[MembershipEdge],
    frozen: set[str],
    now: datetime,
) -> WatchedUpdate:
    """Materialise the effective (transitive) membership of the groups in `roots`, one row
    per group and member; continuing members keep `first_seen_at`. The rows of a `frozen`
    (suspect) group are left as they are."""
    result = WatchedUpdate()
    for kind, groups in roots.items():
        effective = effective_members(edges, [g for g in groups if g not in frozen])
        for group, members in effective.items():
            _update_group(session, kind, group, members, now, result)
    return result


def drop_unconfigured(session: Session, configured: list[str]) -> None:
    """A group removed from the config no longer decides anything (its rows go)."""
    session.execute(delete(WatchedMemberRow).where(WatchedMemberRow.via_group.not_in(configured)))


def _update_group(
    session: Session, kind: str, group: str, members: set[str], now: datetime, out: WatchedUpdate
) -> None:
    old = set(
        session.scalars(
            select(WatchedMemberRow.object_id).where(WatchedMemberRow.via_group == group)
        )
    )
    added = sorted(members - old)
    removed = sorted(old - members)
    if added:
        session.execute(
            _insert(session, WatchedMemberRow).on_conflict_do_nothing(),
            [
                {"via_group": group, "object_id": o, "kind": kind, "first_seen_at": now}
                for o in added
            ],
        )
    for start in range(0, len(removed), 500):
        session.execute(
            delete(WatchedMemberRow).where(
                WatchedMemberRow.via_group == group,
                WatchedMemberRow.object_id.in_(removed[start : start + 500]),
            )
        )
    out.added += len(added)
    out.removed += len(removed)
