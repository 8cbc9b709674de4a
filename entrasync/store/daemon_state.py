"""What the daemon keeps in the store (table ``daemon_state``, migration 0003).

One row per key, a JSON value:

* ``instance:<id>`` — one per running ``entrasync run``: host, pid, role (leader/standby),
  the health address, a heartbeat, and (for the leader) the next run time of each job. This
  is what ``entrasync status`` shows, from any host that can read the store.
* ``cycles`` — the failure streak of the scheduled cycles (consecutive failures, when the
  streak began, whether the admins were emailed): kept in the store so that a standby that
  takes over continues the streak instead of alerting a second time.
* ``changed_objects`` — the settings the queue of changed objects was last checked under
  (store/changes.py): a cycle that finds them changed re-examines every object once.

Instances write their row on every heartbeat and delete it on a clean stop; a row whose
heartbeat is older than ``STALE_AFTER`` belongs to a process that died and is ignored (and
pruned by the leader).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from entrasync.store.runs import COMPLETED, RunKind
from entrasync.store.schema import DaemonStateRow, RunRow
from entrasync.store.uow import UnitOfWork

__all__ = [
    "CYCLES_KEY",
    "INSTANCE_PREFIX",
    "DaemonStateRow",
    "InstanceView",
    "daemon_summary",
    "get",
    "last_completed_finish",
    "live_instances",
    "prune_dead",
    "put",
    "remove",
]

INSTANCE_PREFIX = "instance:"
CYCLES_KEY = "cycles"
STALE_AFTER = timedelta(seconds=45)
PRUNE_AFTER = timedelta(hours=1)


def put(uow: UnitOfWork, key: str, value: Mapping[str, Any]) -> None:
    row = uow.session.get(DaemonStateRow, key)
    if row is None:
        uow.session.add(DaemonStateRow(key=key, value=dict(value), updated_at=uow.now))
    else:
        row.value = dict(value)
        row.updated_at = uow.now


def get(session: Session, key: str) -> dict[str, Any] | None:
    row = session.get(DaemonStateRow, key)
    return dict(row.value) if row is not None else None


def remove(uow: UnitOfWork, key: str) -> None:
    uow.session.execute(delete(DaemonStateRow).where(DaemonStateRow.key == key))


@dataclass(frozen=True)
class InstanceView:
    instance: str
    updated_at: datetime
    value: dict[str, Any]

    @property
    def role(self) -> str:
        return str(self.value.get("role", "standby"))

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.value,
            "instance": self.instance,
            "heartbeat_at": self.updated_at.isoformat(),
        }


def live_instances(session: Session, now: datetime) -> list[InstanceView]:
    """Running daemons (fresh heartbeat), the leader first."""
    rows = session.scalars(
        select(DaemonStateRow).where(
            DaemonStateRow.key.startswith(INSTANCE_PREFIX, autoescape=True),
            DaemonStateRow.updated_at >= now - STALE_AFTER,
        )
    ).all()
    views = [
        InstanceView(r.key.removeprefix(INSTANCE_PREFIX), r.updated_at, dict(r.value)) for r in rows
    ]
    return sorted(views, key=lambda v: (v.role != "leader", v.instance))


def prune_dead(uow: UnitOfWork) -> int:
    """Forget instances that stopped heartbeating long ago (killed, host gone)."""
    result = uow.session.execute(
        delete(DaemonStateRow).where(
            DaemonStateRow.key.startswith(INSTANCE_PREFIX, autoescape=True),
            DaemonStateRow.updated_at < uow.now - PRUNE_AFTER,
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


def daemon_summary(session: Session, now: datetime) -> dict[str, Any]:
    """For `entrasync status`: the live instances and the leader's next run times."""
    instances = live_instances(session, now)
    leader = next((i for i in instances if i.role == "leader"), None)
    return {
        "instances": [i.as_dict() for i in instances],
        "leader": leader.instance if leader else None,
        "jobs": dict(leader.value.get("jobs", {})) if leader else {},
    }


def last_completed_finish(session: Session) -> datetime | None:
    """When the last sync run that completed (ok or held) finished: a standby's health."""
    finished: datetime | None = session.scalar(
        select(func.max(RunRow.finished_at)).where(
            RunRow.kind == RunKind.SYNC, RunRow.status.in_(COMPLETED)
        )
    )
    return finished
