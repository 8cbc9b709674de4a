"""The store side of sure links (domain/linking.py): unlinked records in id order, the live
objects each matches, and how many unlinked records match an object.

Every query is driven by an index from the ids or keys in hand (identifiers by user id, keys
by kind and value, objects by id): a join lets a planner start from the other side instead,
and PostgreSQL chose hash joins over whole tables for it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from entrasync.domain.status import Tracking
from entrasync.store import queries
from entrasync.store.id_lists import chunks
from entrasync.store.schema import EntraKeyRow, EntraUserRow, IdentifierRow, UserRow

_UNLINKED = (UserRow.entra_object_id.is_(None), UserRow.merged_into_id.is_(None))


def objects_changed_since(session: Session, since: datetime, limit: int) -> int:
    """How many Entra objects changed since `since` (ix_entra_users_updated), counting no
    further than `limit`."""
    changed = select(EntraUserRow.object_id).where(EntraUserRow.updated_at >= since).limit(limit)
    return int(session.scalar(select(func.count()).select_from(changed.subquery())) or 0)


def unlinked_after(session: Session, after: int, limit: int) -> list[tuple[int, bool]]:
    """The next `limit` live unlinked records after id `after`, in id order, with whether
    each is tracked."""
    return [
        (int(uid), tracking == Tracking.TRACKED)
        for uid, tracking in session.execute(
            select(UserRow.id, UserRow.tracking)
            .where(*_UNLINKED, UserRow.id > after)
            .order_by(UserRow.id)
            .limit(limit)
        )
    ]


def live_matches(session: Session, ids: Sequence[int]) -> dict[int, dict[str, bool]]:
    """Records `ids` -> {live Entra object whose keys match one of their identifiers: whether
    its account is enabled}; records matching none are left out."""
    keys_of: dict[tuple[str, str], list[int]] = defaultdict(list)
    for id_chunk in chunks(list(ids)):
        for uid, kind, value in session.execute(
            select(IdentifierRow.user_id, IdentifierRow.kind, IdentifierRow.value).where(
                IdentifierRow.user_id.in_(id_chunk)
            )
        ):
            keys_of[(str(kind), str(value))].append(int(uid))
    holders: dict[str, set[int]] = defaultdict(set)
    for kind, values in queries.by_kind(keys_of).items():
        for chunk in chunks(values):
            for value, object_id in session.execute(
                select(EntraKeyRow.value, EntraKeyRow.object_id).where(
                    EntraKeyRow.kind == kind, EntraKeyRow.value.in_(chunk)
                )
            ):
                holders[str(object_id)].update(keys_of[(kind, str(value))])
    found: dict[int, dict[str, bool]] = defaultdict(dict)
    for chunk in chunks(sorted(holders)):
        for object_id, enabled in session.execute(
            select(EntraUserRow.object_id, EntraUserRow.account_enabled).where(
                EntraUserRow.object_id.in_(chunk), EntraUserRow.deleted_at.is_(None)
            )
        ):
            for uid in holders[str(object_id)]:
                found[uid][str(object_id)] = enabled is not False
    return dict(found)


def claimants(session: Session, objects: Sequence[str]) -> dict[str, int]:
    """object -> how many live unlinked records match its keys."""
    holders: dict[str, set[int]] = defaultdict(set)
    for chunk in chunks(list(objects)):
        for object_id, user_id in session.execute(
            select(EntraKeyRow.object_id, IdentifierRow.user_id)
            .join(
                IdentifierRow,
                (IdentifierRow.kind == EntraKeyRow.kind)
                & (IdentifierRow.value == EntraKeyRow.value),
            )
            .where(EntraKeyRow.object_id.in_(chunk))
        ):
            holders[str(object_id)].add(int(user_id))
    users = sorted({u for held in holders.values() for u in held})
    unlinked: set[int] = set()
    for chunk_ids in chunks(users):
        unlinked.update(
            session.scalars(select(UserRow.id).where(UserRow.id.in_(chunk_ids), *_UNLINKED))
        )
    return {o: len(held & unlinked) for o, held in holders.items() if held & unlinked}
