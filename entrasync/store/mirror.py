"""The Entra mirror's rows: users with their identity keys, and direct membership edges.

Writes are set-based (one statement per page, not per object): a first round of a large
tenant applies hundreds of pages. Only `entrasync.sync.mirror` decides what to write.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, or_, select, text, update
from sqlalchemy.orm import Session

from entrasync.domain.entra import EntraUser, MembershipChange, MembershipEdge
from entrasync.domain.evidence import MergeMaps, identity_keys
from entrasync.domain.identity import normalize
from entrasync.store.driver import on_postgresql
from entrasync.store.id_lists import chunks
from entrasync.store.schema import EntraKeyRow, EntraMemberRow, EntraUserRow
from entrasync.store.upsert import insert_for

_BATCH = 500


def mark_users_deleted(session: Session, object_ids: list[str], now: datetime) -> None:
    session.execute(
        update(EntraUserRow)
        .where(EntraUserRow.object_id.in_(object_ids))
        .values(deleted_at=now, updated_at=now)
    )
    # Keys describe live objects only. A full round cannot tell a soft deletion from a
    # permanent one (both are simply absent), so an increment drops the keys of either
    # too, and both ways of learning of a deletion leave the same mirror; a restored
    # user comes back as a whole item and gets its keys again.
    session.execute(delete(EntraKeyRow).where(EntraKeyRow.object_id.in_(object_ids)))


def mark_unseen_users_deleted(session: Session, now: datetime) -> int:
    """After a full round: everyone seen was stamped with `now`; the rest is gone. Returns
    how many were marked."""
    gone = select(EntraUserRow.object_id).where(
        EntraUserRow.updated_at < now, EntraUserRow.deleted_at.is_(None)
    )
    session.execute(delete(EntraKeyRow).where(EntraKeyRow.object_id.in_(gone)))
    marked = session.execute(
        update(EntraUserRow)
        .where(EntraUserRow.updated_at < now, EntraUserRow.deleted_at.is_(None))
        .values(deleted_at=now)
    )
    return int(getattr(marked, "rowcount", 0) or 0)


def upsert_users(
    session: Session, users: Iterable[EntraUser], maps: MergeMaps, now: datetime
) -> None:
    """Upsert a page of users and rebuild their identity keys. An item may leave out
    properties that did not change (`EntraUser.present`): they keep their mirrored value,
    and the keys are rebuilt from the merged user. Set-based: one read of the page's
    mirrored rows, one upsert, one key delete and one key insert per page. A user sent twice
    (a replay) is merged in order, so the later item wins."""
    users = list(users)
    ids = list(dict.fromkeys(u.id for u in users))
    stored = _stored_users(session, ids, everything=any(not u.complete for u in users))
    merged: dict[str, EntraUser] = {}
    for item in users:
        base = merged.get(item.id) or (stored[item.id][0] if item.id in stored else None)
        merged[item.id] = item.merged_with(base)
    rows: list[dict[str, Any]] = []
    keys: list[dict[str, Any]] = []
    for user in merged.values():
        previous = _previous_upns(user, stored.get(user.id))
        rows.append(_user_row(user, previous, now))
        keys.extend(
            {"object_id": user.id, "kind": k.kind, "value": k.value, "rank": k.rank}
            for k in identity_keys(user, previous, maps)
        )
    _write_users(session, rows, keys, [i for i in ids if i in stored])


def _previous_upns(user: EntraUser, stored: tuple[EntraUser, list[str] | None] | None) -> list[str]:
    """The UPNs the object had before, with the mirrored one added when it changes now."""
    previous = list((stored[1] if stored else None) or [])
    old_upn = stored[0].user_principal_name if stored else None
    new_upn = normalize(user.user_principal_name) if user.user_principal_name else None
    if old_upn and new_upn and old_upn != new_upn and old_upn not in previous:
        previous.append(old_upn)
    return previous


# The mirror's columns that hold an EntraUser field as read (column -> field), declared once
# for writing and reading back; the UPN (normalised) and proxy addresses (a list) are not.
_AS_READ = {
    "mail": "mail",
    "on_premises_upn": "on_premises_user_principal_name",
    "on_premises_sam": "on_premises_sam_account_name",
    "on_premises_domain": "on_premises_domain_name",
    "employee_id": "employee_id",
    "display_name": "display_name",
    "account_enabled": "account_enabled",
}


def _user_row(user: EntraUser, previous: list[str], now: datetime) -> dict[str, Any]:
    return {
        "object_id": user.id,
        "upn": normalize(user.user_principal_name) if user.user_principal_name else None,
        "proxy_addresses": list(user.proxy_addresses),
        **{column: getattr(user, name) for column, name in _AS_READ.items()},
        "previous_upns": previous,
        "deleted_at": None,
        "updated_at": now,
    }


def _write_users(
    session: Session, rows: list[dict[str, Any]], keys: list[dict[str, Any]], mirrored: list[str]
) -> None:
    stmt = insert_for(session, EntraUserRow)
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
    if mirrored:
        session.execute(delete(EntraKeyRow).where(EntraKeyRow.object_id.in_(mirrored)))
    if keys:
        session.execute(insert_for(session, EntraKeyRow).on_conflict_do_nothing(), keys)


_UPN_COLUMNS = (EntraUserRow.object_id, EntraUserRow.upn, EntraUserRow.previous_upns)
_OTHER_COLUMNS = (
    EntraUserRow.proxy_addresses,
    *(getattr(EntraUserRow, column) for column in _AS_READ),
)


def _stored_users(
    session: Session, ids: list[str], everything: bool
) -> dict[str, tuple[EntraUser, list[str] | None]]:
    """The mirrored users among `ids` with their previous UPNs. Only the UPN is read unless
    `everything` (a partial item needs the stored values of what it left out): the common
    bulk round then reads three columns, not ten."""
    columns = [*_UPN_COLUMNS, *(_OTHER_COLUMNS if everything else ())]
    out: dict[str, tuple[EntraUser, list[str] | None]] = {}
    for row in session.execute(select(*columns).where(EntraUserRow.object_id.in_(ids))):
        if not everything:
            user = EntraUser(row.object_id, user_principal_name=row.upn)
        else:
            user = EntraUser(
                id=row.object_id,
                user_principal_name=row.upn,
                proxy_addresses=tuple(row.proxy_addresses or ()),
                **{name: getattr(row, column) for column, name in _AS_READ.items()},
            )
        out[row.object_id] = (user, row.previous_upns)
    return out


def remove_edge(session: Session, group_id: str, member_id: str) -> None:
    session.execute(
        delete(EntraMemberRow).where(
            EntraMemberRow.group_id == group_id, EntraMemberRow.member_id == member_id
        )
    )


def add_edges(
    session: Session, changes: list[MembershipChange], now: datetime, seen_round: int | None = None
) -> None:
    """Idempotent: an edge already there keeps its `first_seen_at`. A full round stamps the
    edges it sees with its id (`seen_round`), new or not."""
    if not changes:
        return
    statement = insert_for(session, EntraMemberRow)
    if seen_round is None:
        statement = statement.on_conflict_do_nothing()
    else:
        statement = statement.on_conflict_do_update(
            index_elements=["group_id", "member_id"],
            set_={"seen_round": statement.excluded.seen_round},
        )
    session.execute(
        statement,
        [
            {
                "group_id": c.group_id,
                "member_id": c.member_id,
                "member_type": c.member_kind,
                "first_seen_at": now,
                "seen_round": seen_round,
            }
            for c in changes
        ],
    )


def drop_group_edges(session: Session, group_id: str) -> None:
    session.execute(delete(EntraMemberRow).where(EntraMemberRow.group_id == group_id))


def remove_unseen(session: Session, groups: Sequence[str], seen_round: int) -> None:
    """Edges of `groups` the full round `seen_round` did not stamp are gone."""
    for chunk in chunks(list(groups)):
        session.execute(
            delete(EntraMemberRow).where(
                EntraMemberRow.group_id.in_(chunk),
                or_(EntraMemberRow.seen_round.is_(None), EntraMemberRow.seen_round != seen_round),
            )
        )


def mirror_edges(session: Session, member_type: str | None = None) -> list[MembershipEdge]:
    """The mirror's membership edges; with `member_type="group"` only the nesting ones (found
    through ix_entra_members_type: what finding the child groups needs, not every member)."""
    query = select(EntraMemberRow.group_id, EntraMemberRow.member_id, EntraMemberRow.member_type)
    if member_type is not None:
        query = query.where(EntraMemberRow.member_type == member_type)
    return [
        MembershipEdge(g, m, kind)  # type: ignore[arg-type]
        for g, m, kind in session.execute(query)
    ]


def members_of_any(session: Session, groups: Sequence[str], members: Sequence[str]) -> set[str]:
    """Which of `members` are direct user members of at least one of `groups` (from each
    member's edges: `ix_entra_members_member`; only user edges make a member, as in
    `effective_members`)."""
    found: set[str] = set()
    for chunk in chunks(list(members)):
        found.update(
            session.scalars(
                select(EntraMemberRow.member_id)
                .where(
                    EntraMemberRow.member_id.in_(chunk),
                    EntraMemberRow.group_id.in_(groups),
                    EntraMemberRow.member_type == "user",
                )
                .distinct()
            )
        )
    return found


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


# The tables a full read fills or rewrites (a first sync from empty): their planner statistics
# say what they held before it.
_MIRROR_TABLES = ("entra_users", "entra_keys", "entra_members", "watched_members")


def refresh_statistics(session: Session) -> None:
    """PostgreSQL: ANALYZE the mirror after a full read, before the queries that join it with
    the store (linking, planning). A first sync fills it from empty, and with the statistics
    of an empty table the planner loops over what it takes for a handful of rows (a first
    sync of 20,000 users spent most of its time there). Autovacuum would get to it, later.
    Skipped, with PostgreSQL's own warning, for a role that does not own the tables."""
    if on_postgresql(session):
        session.execute(text(f"ANALYZE {', '.join(_MIRROR_TABLES)}"))
