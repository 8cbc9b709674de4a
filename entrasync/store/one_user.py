"""The rows an on-demand sync of one person reads and writes (`entrasync sync --user`):
what the store knows of IDENT, that person's direct edges in the mirror, and their
materialised watched-group memberships. Every statement is about one object or one record
(indexed), so the cost does not depend on the size of the tenant."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from entrasync.domain.entra import MembershipEdge
from entrasync.domain.identity import IdentifierKind
from entrasync.errors import NotFound
from entrasync.store import queries
from entrasync.store.schema import (
    EntraKeyRow,
    EntraMemberRow,
    EntraUserRow,
    IdentifierRow,
    UserRow,
    WatchedMemberRow,
)
from entrasync.store.upsert import insert_for


@dataclass(frozen=True)
class Known:
    """What the store knows of IDENT: the record it names (merged records resolve to their
    survivor), and where Graph may find that person, best first: the linked Entra object;
    else the record's UPNs and the live mirrored objects whose keys match its identifiers."""

    user_id: int | None = None
    linked_object: str | None = None
    graph_keys: tuple[str, ...] = ()


def known(session: Session, ident: str) -> Known:
    try:
        user = queries.find_user(session, ident)
    except NotFound:
        return Known()
    if user.entra_object_id:
        return Known(user.id, user.entra_object_id, (user.entra_object_id,))
    upns = session.scalars(
        select(IdentifierRow.value).where(
            IdentifierRow.user_id == user.id, IdentifierRow.kind == IdentifierKind.UPN
        )
    ).all()
    best = func.min(EntraKeyRow.rank)
    matches = session.execute(
        select(EntraKeyRow.object_id, best)
        .join(
            IdentifierRow,
            (IdentifierRow.kind == EntraKeyRow.kind) & (IdentifierRow.value == EntraKeyRow.value),
        )
        .join(EntraUserRow, EntraUserRow.object_id == EntraKeyRow.object_id)
        .where(IdentifierRow.user_id == user.id, EntraUserRow.deleted_at.is_(None))
        .group_by(EntraKeyRow.object_id)
        .order_by(best, EntraKeyRow.object_id)
    ).all()
    keys = [*sorted(upns), *(str(object_id) for object_id, _ in matches)]
    return Known(user.id, None, tuple(dict.fromkeys(keys)))


def group_edges(session: Session) -> list[MembershipEdge]:
    """The mirror's group-in-group edges (nesting), without the user edges."""
    return [
        MembershipEdge(g, m, "group")
        for g, m in session.execute(
            select(EntraMemberRow.group_id, EntraMemberRow.member_id).where(
                EntraMemberRow.member_type == "group"
            )
        )
    ]


def parent_groups(session: Session, member_id: str) -> set[str]:
    """The groups the mirror has `member_id` directly in (ix_entra_members_member)."""
    return set(
        session.scalars(
            select(EntraMemberRow.group_id).where(EntraMemberRow.member_id == member_id)
        )
    )


def drop_edges(session: Session, member_id: str, groups: Iterable[str]) -> None:
    wanted = sorted(groups)
    if wanted:
        session.execute(
            delete(EntraMemberRow).where(
                EntraMemberRow.member_id == member_id, EntraMemberRow.group_id.in_(wanted)
            )
        )


@dataclass(frozen=True)
class Membership:
    group_id: str
    kind: str  # GroupKind
    first_seen_at: datetime


def watched_of(session: Session, object_id: str) -> list[Membership]:
    """The object's materialised watched-group memberships (ix_watched_members_object)."""
    return [
        Membership(r.via_group, r.kind, r.first_seen_at)
        for r in session.scalars(
            select(WatchedMemberRow)
            .where(WatchedMemberRow.object_id == object_id)
            .order_by(WatchedMemberRow.via_group)
        )
    ]


def set_watched_of(
    session: Session,
    object_id: str,
    wanted: Mapping[str, str],
    groups: Iterable[str],
    now: datetime,
) -> tuple[int, int]:
    """The object's rows among `groups` become `wanted` (group -> kind); a continuing
    membership keeps its `first_seen_at` (the purge delay runs from it). Rows of other groups
    (a suspect group's, frozen) are left alone. Returns (added, removed)."""
    scope = set(groups)
    old = {m.group_id for m in watched_of(session, object_id) if m.group_id in scope}
    added = sorted(set(wanted) - old)
    removed = sorted(old - set(wanted))
    if added:
        session.execute(
            insert_for(session, WatchedMemberRow).on_conflict_do_nothing(),
            [
                {"via_group": g, "object_id": object_id, "kind": wanted[g], "first_seen_at": now}
                for g in added
            ],
        )
    if removed:
        session.execute(
            delete(WatchedMemberRow).where(
                WatchedMemberRow.object_id == object_id, WatchedMemberRow.via_group.in_(removed)
            )
        )
    return len(added), len(removed)


def linked_record(session: Session, object_id: str) -> int | None:
    """The live record linked to the Entra object, if any."""
    found = session.scalar(
        select(UserRow.id).where(
            UserRow.entra_object_id == object_id, UserRow.merged_into_id.is_(None)
        )
    )
    return None if found is None else int(found)
