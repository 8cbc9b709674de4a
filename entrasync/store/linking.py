"""The store side of sure links (domain/linking.py): unlinked records in id order, the live
objects each matches, and how many unlinked records match an object."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import and_, distinct, func, select
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


def live_matches(session: Session, first: int, last: int) -> dict[int, set[str]]:
    """Unlinked records with ids in [first, last] -> the live Entra objects whose keys match
    one of their identifiers (records matching none are left out)."""
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
        .join(UserRow, UserRow.id == IdentifierRow.user_id)
        .where(IdentifierRow.user_id.between(first, last), *_UNLINKED)
    )
    for user_id, object_id in rows:
        found[int(user_id)].add(str(object_id))
    return dict(found)


def claimants(session: Session, objects: Sequence[str]) -> dict[str, int]:
    """object -> how many live unlinked records match its keys."""
    counts: dict[str, int] = {}
    for chunk in queries.chunks(list(objects)):
        counts.update(
            (str(o), int(n))
            for o, n in session.execute(
                select(EntraKeyRow.object_id, func.count(distinct(IdentifierRow.user_id)))
                .join(IdentifierRow, _KEY_MATCH)
                .join(UserRow, UserRow.id == IdentifierRow.user_id)
                .where(EntraKeyRow.object_id.in_(chunk), *_UNLINKED)
                .group_by(EntraKeyRow.object_id)
            )
        )
    return counts
