"""The ``heartbeat`` job (every instance, every 10 s): publish this instance in
``daemon_state`` (role, next run times: what ``entrasync status`` shows), read the store's last
successful cycle and, on a standby, the leader's failure streak, for ``/healthz``; and, now and
then, the license figures and the watched groups' state for the metrics."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from entrasync.config import Config
from entrasync.daemon.common import attempt, iso, log, utcnow
from entrasync.daemon.metrics import Metrics
from entrasync.daemon.streak import Streak
from entrasync.store import daemon_state
from entrasync.store.account import license_status
from entrasync.store.db import Store
from entrasync.store.errors import STORE_ERRORS, describe
from entrasync.store.gate import TransactionGate
from entrasync.sync.groups import list_groups

HEARTBEAT = timedelta(seconds=10)


@dataclass(frozen=True)
class Identity:
    """This instance, as `entrasync status` and `/healthz` name it."""

    instance: str
    host: str
    pid: int
    started_at: datetime

    @property
    def key(self) -> str:
        return daemon_state.INSTANCE_PREFIX + self.instance


@dataclass(frozen=True)
class Published:
    """What the heartbeat publishes besides the identity, read when it runs."""

    role: Callable[[], str]
    listen: Callable[[], str]
    jobs: Callable[[], dict[str, str | None]]


class Heartbeat:
    def __init__(
        self,
        store: Store,
        settings: Callable[[], Config],
        metrics: Metrics,
        streak: Streak,
        identity: Identity,
    ) -> None:
        self.store = store
        self.identity = identity
        self.published = Published(lambda: "standby", lambda: "", dict)
        self._settings = settings
        self._metrics = metrics
        self._streak = streak
        self._lock = threading.Lock()
        self._suspect: dict[str, str] = {}
        self._licenses_at = 0.0

    def suspect(self) -> dict[str, str]:
        """Watched groups whose read is suspect, and why."""
        with self._lock:
            return dict(self._suspect)

    def beat(self) -> None:
        leader = self.published.role() == "leader"
        published = attempt(lambda: self._publish(leader), "heartbeat: store not reachable")
        if published is None:
            return
        stored, last_run = published
        self._streak.adopt(stored, last_run, leader=leader)
        self.refresh_licenses()
        best = self._streak.last_success()
        if best is not None:
            self._metrics.last_success.set(best.timestamp())

    def _publish(self, leader: bool) -> tuple[dict[str, Any], datetime | None]:
        value = {
            "host": self.identity.host,
            "pid": self.identity.pid,
            "role": self.published.role(),
            "listen": self.published.listen(),
            "started_at": iso(self.identity.started_at),
            "jobs": self.published.jobs(),
        }
        with self.store.unit_of_work(utcnow()) as uow:
            daemon_state.put(uow, self.identity.key, value)
            if leader:
                daemon_state.prune_dead(uow)
        with self.store.reading() as session:
            stored = daemon_state.get(session, daemon_state.CYCLES_KEY) or {}
            return stored, daemon_state.last_completed_finish(session)

    def refresh_licenses(self, force: bool = False) -> None:
        every = max(30.0, self._settings().schedule.interval.total_seconds())
        if not force and time.monotonic() - self._licenses_at < every:
            return
        try:
            with self.store.reading() as session:
                figures = license_status(session, utcnow())
                groups = list_groups(session, self._settings())
        except STORE_ERRORS as exc:
            log.debug("license figures not refreshed", error=describe(exc))
            return
        self._licenses_at = time.monotonic()
        self._metrics.set_licenses(figures.used, figures.purchased, figures.pending)
        self._metrics.set_suspect([(g.id, g.kind, g.state == "suspect") for g in groups])
        suspect = {g.id: g.detail or g.state for g in groups if g.state == "suspect"}
        with self._lock:
            self._suspect = suspect
        for group, why in suspect.items():
            log.warning("watched group is suspect", group=group, why=why)

    def withdraw(self, gate: TransactionGate) -> None:
        """On a clean stop: this instance is no longer running (best effort)."""
        with gate.bypass():
            try:
                with self.store.unit_of_work(utcnow()) as uow:
                    daemon_state.remove(uow, self.identity.key)
            except STORE_ERRORS:
                pass
