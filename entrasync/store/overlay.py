"""A scratch copy of what planning reads, for a dry run (`plan`, `sync --dry-run`).

A dry run must apply Graph's read to the mirror before it can plan, yet write nothing: it
runs on a read-only file or with a SELECT-only role (DESIGN.md). So the tables the read and
the planner touch are copied, from one reading snapshot, into an in-memory SQLite database,
and the read is applied there; the copy is dropped at the end. History is not copied: the
planner only asks whether an agent has any, so each agent with history gets one stand-in row.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, create_engine, insert, select
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from entrasync.domain.audit import SYSTEM_ACTOR
from entrasync.store.db import Store
from entrasync.store.queries import has_history
from entrasync.store.schema import (
    ActivityRow,
    AgentRow,
    Base,
    EntraGroupRow,
    EntraKeyRow,
    EntraMemberRow,
    EntraUserRow,
    IdentifierRow,
    RunRow,
    ScheduledPurgeRow,
    SyncStateRow,
    UserRow,
    WatchedMemberRow,
)
from entrasync.store.uow import UnitOfWork

_COPIED: tuple[Any, ...] = (
    UserRow,
    IdentifierRow,
    AgentRow,
    EntraUserRow,
    EntraKeyRow,
    EntraMemberRow,
    EntraGroupRow,
    SyncStateRow,
    WatchedMemberRow,
    ScheduledPurgeRow,
    RunRow,
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@contextmanager
def open_overlay(store: Store, now: datetime) -> Iterator[UnitOfWork]:
    """A unit of work on the scratch copy (never committed anywhere: it is dropped)."""
    engine = create_engine("sqlite://", poolclass=StaticPool)
    try:
        Base.metadata.create_all(engine)
        with Session(engine) as scratch:
            with store.reading() as source:
                _copy(source, scratch)
            yield UnitOfWork(scratch, _no_lock, now=now, actor=SYSTEM_ACTOR, run_id=None)
            scratch.rollback()
    finally:
        engine.dispose()


def _no_lock(session: Session) -> None:
    """The copy has one writer: this dry run."""


def _copy(source: Session, scratch: Session) -> None:
    for model in _COPIED:
        table: Table = model.__table__
        result = source.execute(select(table).execution_options(yield_per=5000))
        for part in result.partitions():
            scratch.execute(insert(table), [dict(row._mapping) for row in part])
    with_history = source.scalars(select(AgentRow.id).where(has_history())).all()
    if with_history:
        scratch.execute(
            insert(ActivityRow),
            [
                {
                    "agent_id": agent,
                    "device": "",
                    "start": _EPOCH,
                    "duration_s": 0,
                    "app": "",
                    "received_at": _EPOCH,
                }
                for agent in with_history
            ],
        )
