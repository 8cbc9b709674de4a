"""Run records: one row per cycle, approve or retention job, from start to outcome.

The cycle starts and finishes its own record; the daemon closes records a dead leader left
"running" and marks a record interrupted when a stop cuts its cycle short; `status` reads the
latest one. All of it is here, keyed by the run's id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from entrasync.domain.status import RunStatus
from entrasync.store.schema import RunRow
from entrasync.store.uow import UnitOfWork

# Outcomes after which the store was left consistent (a held run applied everything else).
COMPLETED = (RunStatus.OK, RunStatus.HELD)


class RunKind(StrEnum):
    SYNC = "sync"
    APPROVE = "approve"
    # `sync --user IDENT`: one person, read directly. Not a cycle: it never counts as the
    # last completed cycle (delta bookkeeping, the daemon's last success).
    USER = "sync-user"


@dataclass(frozen=True)
class RunOutcome:
    status: RunStatus
    graph_requests: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    held: dict[str, int] = field(default_factory=dict)
    resync: bool = False
    message: str | None = None
    suspect: dict[str, str] = field(default_factory=dict)


def start(uow: UnitOfWork, run_id: str, kind: RunKind) -> None:
    uow.session.add(
        RunRow(
            id=run_id,
            kind=kind,
            status=RunStatus.RUNNING,
            started_at=uow.now,
            counts={},
            held={},
        )
    )


def finish(uow: UnitOfWork, run_id: str, outcome: RunOutcome) -> None:
    """Record the outcome; `uow.now` is when the run finished (never before it started)."""
    run = uow.session.get_one(RunRow, run_id)
    run.status = outcome.status
    run.finished_at = max(uow.now, run.started_at)
    run.graph_requests = outcome.graph_requests
    run.counts = dict(outcome.counts)
    run.held = dict(outcome.held)
    run.resync = outcome.resync
    run.message = outcome.message
    run.suspect = dict(outcome.suspect) or None


def last_completed_start(session: Session) -> datetime | None:
    """Start of the last sync run that completed."""
    return session.scalar(
        select(func.max(RunRow.started_at)).where(
            RunRow.kind == RunKind.SYNC, RunRow.status.in_(COMPLETED)
        )
    )


def latest(session: Session) -> RunRow | None:
    return session.scalar(select(RunRow).order_by(RunRow.started_at.desc()).limit(1))


def close_abandoned(uow: UnitOfWork, message: str) -> int:
    """Sync runs still "running" (their leader died mid-cycle) become failed; returns how many."""
    closed = uow.session.execute(
        update(RunRow)
        .where(RunRow.kind == RunKind.SYNC, RunRow.status == RunStatus.RUNNING)
        .values(status=RunStatus.FAILED, finished_at=uow.now, message=message)
    )
    return int(getattr(closed, "rowcount", 0) or 0)


def mark_interrupted(uow: UnitOfWork, run_ids: Sequence[str], message: str) -> None:
    """Runs a stop cut short are failed with `message` (a cancelled read may have said
    "failed" already; the stop is the truer story)."""
    uow.session.execute(
        update(RunRow)
        .where(
            RunRow.id.in_(list(run_ids)),
            RunRow.status.in_((RunStatus.RUNNING, RunStatus.FAILED)),
        )
        .values(status=RunStatus.FAILED, finished_at=uow.now, message=message)
    )
