"""The store side of sure links (domain/linking.py): unlinked records in id order, the live
objects each matches, and how many unlinked records match an object."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from entrasync.store import queries
from entrasync.store.schema import EntraKeyRow, EntraUserRow, IdentifierRow, UserRow

_UNLINKED = (UserRow.entra_object_id.is_(None), UserRow.merged_into_id.is_(None))
_KEY_MATCH = and_(EntraKeyRow.kind == IdentifierRow.kind, EntraKeyRow.value == IdentifierRow.value)


def unlinked_after(session: Session, after: int, limit: int) -> list[int]:
    """The next `limit` live unlinked records after id `after`, in id order."""
    return list(
        session.scalars(
            select(UserRow.id)
            .where(*_UNLINKED, UserRow.id > after)
            .order_by(UserRow.id)
            .limit(limit)
        )
    )


def live_matches(session: Session, ids: Sequence[int]) -> dict[int, set[str]]:
    """Records `ids` (consecutive unlinked records from `unlinked_after`) -> the live Entra
    objects whose keys match one of their identifiers (records matching none are left out).
    Driven from the identifiers of the id range, never from the users table."""
    wanted = set(ids)
    found: dict[int, set[str]] = defaultdict(set)
    rows = session.execute(
        select(IdentifierRow.user_id, EntraKeyRow.object_id)
        .join(EntraKeyRow, _KEY_MATCH)
        .join(
            EntraUserRow,
            and_(
                EntraUserRow.object_id == EntraKeyRow.object_id,
                EntraUserRow.deleted_at.is_(None),
            ),
        )
        .where(IdentifierRow.user_id.between(min(ids), max(ids)))
    )
    for user_id, object_id in rows:
        if int(user_id) in wanted:
            found[int(user_id)].add(str(object_id))
    return dict(found)


def claimants(session: Session, objects: Sequence[str]) -> dict[str, int]:
    """object -> how many live unlinked records match its keys. Driven from the objects'
    keys (ix_entra_keys_object): a join through `users` lets a planner start from every
    unlinked record instead, once per chunk."""
    holders: dict[str, set[int]] = defaultdict(set)
    for chunk in queries.chunks(list(objects)):
        for object_id, user_id in session.execute(
            select(EntraKeyRow.object_id, IdentifierRow.user_id)
            .join(IdentifierRow, _KEY_MATCH)
            .where(EntraKeyRow.object_id.in_(chunk))
        ):
            holders[str(object_id)].add(int(user_id))
    users = sorted({u for held in holders.values() for u in held})
    unlinked: set[int] = set()
    for chunk_ids in queries.chunks(users):
        unlinked.update(
            session.scalars(select(UserRow.id).where(UserRow.id.in_(chunk_ids), *_UNLINKED))
        )
    return {o: len(held & unlinked) for o, held in holders.items() if held & unlinked}
