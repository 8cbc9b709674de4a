"""Leadership: only the instance that holds the store's leader lock runs the leader jobs.

A thread tries the lock (standby) or checks it (leader) every few seconds. Stepping up closes
the runs a dead leader left "running", then hands over to `on_lead` (which schedules the
jobs); stepping down (the lock's connection broke) hands over to `on_standby` first, then
gives the lock up. The role is guarded by its own lock, never held during I/O.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from entrasync.config import Config
from entrasync.daemon.common import log, tolerated, utcnow
from entrasync.daemon.metrics import Metrics
from entrasync.errors import SchemaOutOfDate
from entrasync.store import runs
from entrasync.store.db import Store
from entrasync.store.errors import STORE_ERRORS, describe
from entrasync.store.leader_lock import LeaderLock, leader_lock_for

LEADER = "leader"
STANDBY = "standby"
# A standby that cannot reach the store retries the lock less and less often, but at least
# once a minute, so that it takes over soon after the store is back.
LEASE_MAX_WAIT = timedelta(minutes=1)
_ABANDONED = (
    "abandoned: the leader stopped mid-cycle (killed or lost its lock); the next cycle "
    "completes the work"
)
_LOST = "the leader lock was lost (store connection broken)"


def lease_tick(interval: timedelta) -> float:
    """How often a standby retries the lock (and a leader checks it): a quarter of the
    interval, between 0.5 and 5 seconds."""
    return min(5.0, max(0.5, interval.total_seconds() / 4))


def lease_wait(interval: timedelta, max_backoff: timedelta, misses: int) -> float:
    """Seconds before the next leadership step: `lease_tick` while the store answers, then
    doubling with each step that could not reach it, up to max_backoff but at most
    LEASE_MAX_WAIT (and never below the tick)."""
    tick = lease_tick(interval)
    if misses <= 0:
        return tick
    cap = max(tick, min(max_backoff, LEASE_MAX_WAIT).total_seconds())
    return float(min(tick * 2 ** min(misses, 32), cap))


@dataclass(frozen=True)
class RoleHooks:
    """What the rest of the daemon does when the role changes."""

    on_lead: Callable[[datetime], None]  # schedule the leader jobs
    on_standby: Callable[[], None]  # remove them
    changed: Callable[[str], None]  # the new role, for systemd's status line


class Leadership:
    def __init__(
        self,
        store: Store,
        settings: Callable[[], Config],
        metrics: Metrics,
        stopped: threading.Event,
        instance: str,
    ) -> None:
        self.store = store
        self.lock: LeaderLock = leader_lock_for(store.engine)
        self.hooks = RoleHooks(lambda _now: None, lambda: None, lambda _role: None)
        self._settings = settings
        self._metrics = metrics
        self._stopped = stopped
        self._instance = instance
        self._mutex = threading.Lock()
        self._role = STANDBY
        self._schema_ok = False
        self._schema_error = ""
        self._misses = 0
        self._thread = threading.Thread(target=self._loop, name="leadership")

    @property
    def role(self) -> str:
        with self._mutex:
            return self._role

    def is_leader(self) -> bool:
        return self.role == LEADER

    # --- the loop ------------------------------------------------------------------------

    def check_schema(self) -> None:
        """At start-up: a wrong schema is fatal (SchemaOutOfDate); a store that does not
        answer is retried by the loop."""
        try:
            self.store.require_current_schema()
            self._schema_ok = True
        except SchemaOutOfDate:
            raise
        except STORE_ERRORS as exc:
            log.warning("store not reachable at start-up; will keep trying", error=describe(exc))

    def start(self) -> None:
        """Make the first try for the lock (so that READY=1 already knows the role), then
        keep trying or checking it."""
        self._misses = 0 if self.step() else 1
        self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)

    def _loop(self) -> None:
        while not self._stopped.wait(self._wait()):
            try:
                reached = self.step()
            except Exception:
                log.exception("leadership check failed")
                reached = False
            self._misses = 0 if reached else self._misses + 1

    def _wait(self) -> float:
        config = self._settings()
        return lease_wait(config.schedule.interval, config.daemon.max_backoff, self._misses)

    def step(self) -> bool:
        """Try or check the lock; False when the store (or the lock) could not be reached,
        or its schema is not usable yet: the next step then backs off."""
        if self._stopped.is_set():
            return True
        if self.is_leader():
            if not self.lock.still_held():
                self.step_down(_LOST)
            return self.lock.last_error is None
        if not self._schema_ok:
            self._check_schema_quietly()
            if not self._schema_ok:
                return False
        if self.lock.try_acquire():
            self.become_leader()
        return self.lock.last_error is None

    def _check_schema_quietly(self) -> None:
        """Retried by a standby; an out-of-date schema is logged as an error (once per
        distinct message), since only `entrasync db upgrade` fixes it."""
        try:
            self.store.require_current_schema()
            self._schema_ok = True
        except SchemaOutOfDate as exc:
            self._schema_ok = False
            if str(exc) != self._schema_error:
                self._schema_error = str(exc)
                log.error("store schema out of date; staying standby", error=str(exc))
        except STORE_ERRORS:
            self._schema_ok = False

    # --- changes of role -----------------------------------------------------------------

    def confirm(self) -> bool:
        """Before a leader job: is the lock still ours? Steps down when it is not."""
        if self.lock.still_held():
            return True
        self.step_down(_LOST)
        return False

    def become_leader(self) -> None:
        with self._mutex:
            if self._role == LEADER or self._stopped.is_set():
                return
            self._role = LEADER
        self._metrics.leader.set(1)
        now = utcnow()
        self._close_abandoned_runs(now)
        self.hooks.on_lead(now)
        log.info("became the leader", instance=self._instance, leader_lock=self.lock.description)
        self.hooks.changed(LEADER)

    def step_down(self, reason: str) -> None:
        with self._mutex:
            if self._role != LEADER:
                return
            self._role = STANDBY
        self._metrics.leader.set(0)
        self.hooks.on_standby()
        self.lock.release()
        log.warning("stepped down to standby", reason=reason, instance=self._instance)
        self.hooks.changed(STANDBY)

    def _close_abandoned_runs(self, now: datetime) -> None:
        """A sync run still "running" when the lock is taken belonged to a leader that died
        mid-cycle (a live one would still hold the lock): record it as failed. Its work is
        redone by the first cycle (every action is idempotent)."""
        count = 0
        with tolerated("close abandoned runs"), self.store.unit_of_work(now) as uow:
            count = runs.close_abandoned(uow, _ABANDONED)
        if count:
            log.warning("closed runs abandoned by a previous leader", runs=count)
