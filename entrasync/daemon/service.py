"""`entrasync run`: the daemon's parts, wired together.

Threads: the main thread waits for signals (and pings the systemd watchdog, `runner`); a
leadership thread tries or checks the leader lock every few seconds (`leadership`);
APScheduler's worker threads run the jobs (`jobs`); the health server answers HTTP
(`health`, `health_view`). Each part guards its own state and holds no lock during I/O.

Jobs (APScheduler, ``max_instances=1``, ``coalesce``):

* ``sync`` (leader): one cycle, first right after becoming leader (`cycle_job`).
* ``retention``, ``outbox``, ``checkpoint`` and ``forward`` (leader): `chores`.
* ``heartbeat`` (every instance, every 10 s): `heartbeat`.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from entrasync.bootstrap import open_store
from entrasync.config import Config
from entrasync.daemon import chores
from entrasync.daemon.common import log, utcnow
from entrasync.daemon.cycle_job import SYNC_JOB, CycleContext, CycleJob
from entrasync.daemon.health import HealthServer
from entrasync.daemon.health_view import HealthView
from entrasync.daemon.heartbeat import HEARTBEAT, Heartbeat, Identity, Published
from entrasync.daemon.jobs import HEARTBEAT_JOB, Jobs
from entrasync.daemon.leadership import LEADER, Leadership, RoleHooks
from entrasync.daemon.metrics import Metrics
from entrasync.daemon.streak import Streak
from entrasync.store.gate import TransactionGate

LEADER_JOBS = (
    SYNC_JOB,
    chores.RETENTION_JOB,
    chores.OUTBOX_JOB,
    chores.CHECKPOINT_JOB,
    chores.FORWARD_JOB,
)


def _identity() -> Identity:
    host = socket.gethostname()
    pid = os.getpid()
    return Identity(f"{host}:{pid}:{uuid.uuid4().hex[:6]}", host, pid, utcnow())


class Daemon:
    def __init__(
        self,
        config: Config,
        environ: Mapping[str, str] | None = None,
        *,
        on_change: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.environ = dict(os.environ if environ is None else environ)
        self.identity = _identity()
        self.instance = self.identity.instance
        self.metrics = Metrics()
        self.streak = Streak()
        self._on_change = on_change or (lambda _role: None)
        self._stop = threading.Event()
        self.store = open_store(config, check_schema=False)
        self.leadership = Leadership(
            self.store, self._settings, self.metrics, self._stop, self.instance
        )
        self.lock = self.leadership.lock
        self.gate = TransactionGate(self.store.engine, self.is_leader)
        self.jobs = Jobs(self.gate, self.is_leader, self._stop)
        self.scheduler = self.jobs.scheduler
        self._build_jobs()
        self.view = self._build_view()
        self.server = HealthServer(config.daemon.listen, self.view.health, self.render_metrics)
        self.heartbeat.published = Published(
            lambda: self.role, lambda: self.server.address, self.next_runs
        )
        self.leadership.hooks = RoleHooks(self._lead, self._stand_by, self._on_change)

    def _settings(self) -> Config:
        return self.config

    def _build_jobs(self) -> None:
        self.heartbeat = Heartbeat(
            self.store, self._settings, self.metrics, self.streak, self.identity
        )
        context = CycleContext(
            store=self.store,
            gate=self.gate,
            jobs=self.jobs,
            metrics=self.metrics,
            streak=self.streak,
            settings=self._settings,
            environ=self.environ,
            host=self.identity.host,
            is_leader=self.is_leader,
            after_cycle=self._after_cycle,
        )
        self.cycles = CycleJob(context)
        self.chores = chores.Chores(self.store, self._settings, self.metrics, self.instance)

    def _after_cycle(self) -> None:
        try:
            self.heartbeat.refresh_licenses(force=True)
        finally:
            try:
                self.chores.checkpoint()  # signs only when the cycle wrote records (or hourly)
            finally:
                # The new records leave now, from the forward job's own thread: a long backlog
                # must not hold up the next cycle, and one thread forwards at a time.
                self.jobs.poke(chores.FORWARD_JOB)

    def _build_view(self) -> HealthView:
        return HealthView(
            settings=self._settings,
            identity=self.identity,
            streak=self.streak,
            metrics=self.metrics,
            role=lambda: self.role,
            suspect=self.heartbeat.suspect,
            next_runs=self.next_runs,
            leader_lock=self.lock.description,
        )

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Check the schema (a wrong one is fatal: exit 78), serve health, start the jobs and
        make the first try for the lock (so READY=1 already knows the role)."""
        self.leadership.check_schema()
        self.server.start()
        self.scheduler.start()
        self.jobs.add(HEARTBEAT_JOB, self.heartbeat.beat, HEARTBEAT, utcnow())
        self.leadership.start()
        log.info(
            "daemon started",
            instance=self.instance,
            listen=self.server.address,
            role=self.role,
            interval_s=self.config.schedule.interval.total_seconds(),
            leader_lock=self.lock.description,
            store=self.store.dialect,
        )

    def stop(self, timeout: float) -> bool:
        """Let the transaction in progress finish (up to `timeout` seconds), start no new
        one, give up the lock. False when a job was still running at the deadline."""
        # The gate first: a Graph read cancelled by the stop event then finds no transaction
        # to start, so the cycle ends as `Stopping` wherever it was.
        self.gate.close()
        clean = self.jobs.stop(timeout)
        self.leadership.join(timeout=2)
        if clean:
            self.heartbeat.withdraw(self.gate)
        self.lock.release()
        self.server.stop()
        if clean:
            self.store.engine.dispose()
        return clean

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # --- roles ---------------------------------------------------------------------------

    @property
    def role(self) -> str:
        return self.leadership.role

    def is_leader(self) -> bool:
        return self.leadership.is_leader()

    def _become_leader(self) -> None:
        self.leadership.become_leader()

    def _step_down(self, reason: str) -> None:
        self.leadership.step_down(reason)

    @property
    def _not_before(self) -> datetime | None:
        return self.cycles.not_before

    @_not_before.setter
    def _not_before(self, value: datetime | None) -> None:
        self.cycles.not_before = value

    def _lead(self, now: datetime) -> None:
        """Just became the leader: continue the streak, schedule the leader jobs."""
        self.cycles.restore_streak()
        interval = self.config.schedule.interval
        self.jobs.add(SYNC_JOB, self._sync, interval, self.cycles.first_run(now), leader=True)
        self.jobs.add(
            chores.RETENTION_JOB,
            self.chores.retention,
            chores.RETENTION_EVERY,
            now + chores.RETENTION_FIRST_AFTER,
            leader=True,
        )
        self.jobs.add(chores.OUTBOX_JOB, self.chores.flush, chores.OUTBOX_EVERY, now, leader=True)
        # Both do nothing while their key is unset, so a reload that sets it takes effect.
        # A checkpoint "at least hourly" even when no cycle wrote anything.
        self.jobs.add(
            chores.CHECKPOINT_JOB,
            self.chores.checkpoint,
            chores.CHECKPOINT_CHECK_EVERY,
            now + chores.CHECKPOINT_CHECK_EVERY,
            leader=True,
        )
        self.jobs.add(
            chores.FORWARD_JOB, self.chores.forward, chores.FORWARD_EVERY, now, leader=True
        )
        self.jobs.poke(HEARTBEAT_JOB)

    def _stand_by(self) -> None:
        self.jobs.remove(*LEADER_JOBS)
        self.metrics.forward_backlog.set(0)  # the leader reports it; a standby forwards nothing
        self.jobs.poke(HEARTBEAT_JOB)

    def _sync(self) -> None:
        if not self.leadership.confirm():
            return
        try:
            self.cycles.run()
        finally:
            self.jobs.poke(HEARTBEAT_JOB)
            self._on_change(self.role)

    # --- views ---------------------------------------------------------------------------

    def next_runs(self) -> dict[str, str | None]:
        running = frozenset({SYNC_JOB}) if self.cycles.running else frozenset()
        return self.jobs.next_runs(running)

    def last_success(self) -> datetime | None:
        return self.streak.last_success()

    def health(self) -> tuple[int, dict[str, Any]]:
        return self.view.health()

    def render_metrics(self) -> tuple[bytes, str]:
        return self.view.render_metrics()

    def status_line(self) -> str:
        return self.view.status_line()

    # --- reload ----------------------------------------------------------------------------

    def apply_config(self, new: Config) -> list[str]:
        """Take a re-read config; returns the settings that need a restart (kept as before)."""
        kept = []
        if new.store.url != self.config.store.url:
            kept.append("store.url")
        if new.daemon.listen != self.config.daemon.listen:
            kept.append("daemon.listen")
        if kept:
            new = new.model_copy(
                update={
                    "store": self.config.store,
                    "daemon": new.daemon.model_copy(update={"listen": self.config.daemon.listen}),
                }
            )
        old_interval = self.config.schedule.interval
        self.config = new
        if new.schedule.interval != old_interval and self.role == LEADER:
            if self.jobs.reschedule(SYNC_JOB, new.schedule.interval) and self.cycles.running:
                self.jobs.modify(SYNC_JOB, next_run_time=None)
            self.jobs.poke(HEARTBEAT_JOB)
        return kept
