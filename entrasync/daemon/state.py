"""What the daemon keeps in the store (table ``daemon_state``, migration 0003).

One row per key, a JSON value:

* ``instance:<id>`` — one per running ``entrasync run``: host, pid, role (leader/standby),
  the health address, a heartbeat, and (for the leader) the next run time of each job. This
  is what ``entrasync status`` shows, from any host that can read the store.
* ``cycles`` — the failure streak of the scheduled cycles (consecutive failures, when the
  streak began, whether the admins were emailed): kept in the store so that a standby that
  takes over continues the streak instead of alerting a second time.

Instances write their row on every heartbeat and delete it on a clean stop; a row whose
heartbeat is older than ``STALE_AFTER`` belongs to a process that died and is ignored (and
pruned by the leader).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, String, delete, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from entrasync.store.schema import Base, UtcDateTime

INSTANCE_PREFIX = "instance:"
CYCLES_KEY = "cycles"
HEARTBEAT = timedelta(seconds=10)
STALE_AFTER = timedelta(seconds=45)
PRUNE_AFTER = timedelta(hours=1)


class DaemonStateRow(Base):
    """Key/value state of the daemon (see the module docstring)."""

    __tablename__ = "daemon_state"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


def put(session: Session, key: str, value: Mapping[str, Any], now: datetime) -> None:
    row = session.get(DaemonStateRow, key)
    if row is None:
        session.add(DaemonStateRow(key=key, value=dict(value), updated_at=now))
    else:
        row.value = dict(value)
        row.updated_at = now


def get(session: Session, key: str) -> dict[str, Any] | None:
    row = session.get(DaemonStateRow, key)
    return dict(row.value) if row is not None else None


def remove(session: Session, key: str) -> None:
    session.execute(delete(DaemonStateRow).where(DaemonStateRow.key == key))


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


def prune_dead(session: Session, now: datetime) -> int:
    """Forget instances that stopped heartbeating long ago (killed, host gone)."""
    result = session.execute(
        delete(DaemonStateRow).where(
            DaemonStateRow.key.startswith(INSTANCE_PREFIX, autoescape=True),
            DaemonStateRow.updated_at < now - PRUNE_AFTER,
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
