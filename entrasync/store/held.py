"""Actions a safety threshold held (`held_actions`), waiting for `entrasync approve RUN_ID`."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from entrasync.domain.planning import PlannedAction
from entrasync.domain.status import HeldStatus
from entrasync.store.schema import HeldActionRow
from entrasync.store.uow import UnitOfWork


def hold(uow: UnitOfWork, actions: Iterable[PlannedAction]) -> None:
    """Record `actions` as held by the unit of work's run."""
    assert uow.run_id is not None
    uow.session.add_all(
        HeldActionRow(
            run_id=uow.run_id,
            kind=a.kind.value,
            user_id=a.user_id,
            entra_object_id=a.object_id,
            summary=a.target,
            status=HeldStatus.HELD,
            created_at=uow.now,
        )
        for a in actions
    )


def waiting(session: Session, run_id: str) -> set[str]:
    """The targets (`PlannedAction.target`) of `run_id`'s actions still held."""
    return set(
        session.scalars(
            select(HeldActionRow.summary).where(
                HeldActionRow.run_id == run_id, HeldActionRow.status == HeldStatus.HELD
            )
        )
    )


def resolve(uow: UnitOfWork, run_id: str, still_valid: set[str]) -> int:
    """`run_id`'s held actions are released when still valid, else obsolete; returns how
    many were released."""
    released = 0
    for row in uow.session.scalars(
        select(HeldActionRow).where(
            HeldActionRow.run_id == run_id, HeldActionRow.status == HeldStatus.HELD
        )
    ):
        valid = row.summary in still_valid
        row.status = HeldStatus.RELEASED if valid else HeldStatus.OBSOLETE
        row.resolved_at = uow.now
        released += valid
    return released
