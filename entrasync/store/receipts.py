"""What an erasure receipt reads: the person an identifier names (resolved as `audit list
--user` resolves it, merged and retired records included), their erasure records, and how
much of their history the store holds now."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from entrasync.store import audit, queries

# The resolution `audit list --user` uses, so a receipt lists exactly the erasures that
# `audit list --user IDENT --action user.purged` shows.
from entrasync.store.audit import AuditFilter, merge_family, seeds
from entrasync.store.schema import (
    ActivityRow,
    AgentRow,
    AuditRow,
    EntraUserRow,
    IdentifierRow,
    UserRow,
)


@dataclass(frozen=True)
class Person:
    """The store's records of one person: every record merged into or from the one named."""

    user_ids: list[int]
    roots: list[int]  # records not merged into another: more than one is more than one person
    display_name: str | None
    entra_object_id: str | None
    identifiers: list[dict[str, str]]
    tracking: str | None
    activity_rows: int
    agents: int


def person(session: Session, ident: str) -> Person | None:
    """The person `ident` names, or None when no user record matches it."""
    family = merge_family(seeds(ident.strip()))
    users = session.scalars(
        select(UserRow).where(UserRow.id.in_(select(family.c.id))).order_by(UserRow.id)
    ).all()
    if not users:
        return None
    ids = [u.id for u in users]
    roots = [u for u in users if u.merged_into_id is None]
    main = roots[0] if roots else users[0]
    agents, rows = _history(session, ids)
    return Person(
        user_ids=ids,
        roots=[u.id for u in roots],
        display_name=_display_name(session, [main, *users]),
        entra_object_id=main.entra_object_id
        or next((u.entra_object_id for u in users if u.entra_object_id), None),
        identifiers=_identifiers(session, ids),
        tracking=main.tracking,
        activity_rows=rows,
        agents=agents,
    )


def _history(session: Session, user_ids: Sequence[int]) -> tuple[int, int]:
    """(agents, activity rows) the records hold now."""
    agents = session.scalar(select(func.count(AgentRow.id)).where(AgentRow.user_id.in_(user_ids)))
    rows = session.scalar(
        select(func.count())
        .select_from(ActivityRow)
        .join(AgentRow, AgentRow.id == ActivityRow.agent_id)
        .where(AgentRow.user_id.in_(user_ids))
    )
    return int(agents or 0), int(rows or 0)


def _display_name(session: Session, users: Iterable[UserRow]) -> str | None:
    users = list(users)
    for user in users:
        if user.display_name:
            return user.display_name
    objects = [u.entra_object_id for u in users if u.entra_object_id]
    if not objects:
        return None
    names = session.scalars(
        select(EntraUserRow.display_name).where(
            EntraUserRow.object_id.in_(objects), EntraUserRow.display_name.is_not(None)
        )
    ).all()
    return names[0] if names else None


def _identifiers(session: Session, user_ids: Sequence[int]) -> list[dict[str, str]]:
    return queries.named(
        session.execute(
            select(IdentifierRow.kind, IdentifierRow.value).where(
                IdentifierRow.user_id.in_(user_ids)
            )
        )
    )


def erasure_records(
    session: Session, ident: str, actions: Iterable[str]
) -> list[Mapping[str, Any]]:
    """The person's audit records of `actions`, in seq order."""
    found: list[Mapping[str, Any]] = []
    for action in actions:
        found += audit.iter_matching(session, AuditFilter(action=action, person=ident))
    return sorted(found, key=lambda record: int(record["seq"]))


def chain_hashes(session: Session, seqs: Iterable[int]) -> dict[int, str | None]:
    """Each seq's hash in the audit log now (None: no such record)."""
    wanted = sorted(set(seqs))
    found = dict(
        session.execute(select(AuditRow.seq, AuditRow.hash).where(AuditRow.seq.in_(wanted))).all()
    )
    return {seq: found.get(seq) for seq in wanted}
