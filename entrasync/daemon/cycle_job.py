"""The ``sync`` job: one cycle, its failure streak, its backoff and its metrics.

The job pauses itself while it runs and, when done, sets its next run to *finish + delay*: an
overrunning cycle delays the next instead of stacking, and a failing one backs off
(``failures.next_delay``). The spacing (``not_before``) survives a leadership lost and
regained. A cycle a stop cuts short has its run record marked interrupted.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from entrasync.bootstrap import GraphFactory, graph_factory
from entrasync.config import Config
from entrasync.daemon import failures
from entrasync.daemon.common import log, tolerated, utcnow
from entrasync.daemon.jobs import Jobs
from entrasync.daemon.logs import scrubber
from entrasync.daemon.metrics import Metrics
from entrasync.daemon.streak import Streak
from entrasync.domain.audit import format_at
from entrasync.domain.status import RunStatus
from entrasync.errors import EntrasyncError
from entrasync.graph import Cancelled, ClientSecret, GraphClient, MsalCaches
from entrasync.store import daemon_state, runs
from entrasync.store.db import Store
from entrasync.store.errors import STORE_ERRORS
from entrasync.store.gate import Stopping, TransactionGate
from entrasync.sync.cycle import run_cycle

SYNC_JOB = "sync"
_COUNTED = (RunStatus.OK, RunStatus.HELD, RunStatus.DRY_RUN)
_INTERRUPTED = (
    "interrupted: the daemon stopped or lost the leadership mid-cycle; the next cycle "
    "completes the work"
)


@dataclass
class _Attempt:
    """What one cycle came to (a failure has an `error`)."""

    outcome: str = RunStatus.FAILED
    run_id: str = ""
    applied: Mapping[str, int] = field(default_factory=dict)
    held: Mapping[str, int] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class CycleContext:
    """What a cycle needs from the daemon around it."""

    store: Store
    gate: TransactionGate
    jobs: Jobs
    metrics: Metrics
    streak: Streak
    settings: Callable[[], Config]
    environ: Mapping[str, str]
    host: str
    is_leader: Callable[[], bool]
    after_cycle: Callable[[], None]  # refresh the license figures


class CycleJob:
    def __init__(self, context: CycleContext) -> None:
        self.ctx = context
        # One token for the daemon's life, refreshed by MSAL before expiry (not one per cycle).
        self._caches = MsalCaches()
        self._mutex = threading.Lock()
        self._running = False
        # No cycle starts before this (set when a cycle starts and when it ends): keeps the
        # backoff across a leadership lost and regained.
        self.not_before: datetime | None = None

    @property
    def running(self) -> bool:
        with self._mutex:
            return self._running

    def first_run(self, now: datetime) -> datetime:
        """When a new leader's first cycle may start."""
        with self._mutex:
            return max(now, self.not_before or now)

    def restore_streak(self) -> None:
        """Continue the failure streak a previous leader left in the store."""
        try:
            with self.ctx.store.reading() as session:
                stored = daemon_state.get(session, daemon_state.CYCLES_KEY) or {}
        except STORE_ERRORS:
            return
        self.ctx.streak.restore(stored)

    def next_delay(self) -> timedelta:
        config = self.ctx.settings()
        return failures.next_delay(
            config.schedule.interval, config.daemon.max_backoff, self.ctx.streak.failures
        )

    def run(self) -> None:
        """One cycle; whatever happens in it or after it, the next one is scheduled (a
        failure that skipped this would stop the cycles for good)."""
        now = utcnow()
        with self._mutex:
            # From the start: a cycle cut short by a lost leadership still spaces the next.
            self.not_before = now + self.next_delay()
        self._set_running(True)
        finished = now
        try:
            finished = self._cycle(now)
        finally:
            self._set_running(False)
            self._schedule_next(finished)

    def _set_running(self, running: bool) -> None:
        with self._mutex:
            self._running = running
        if running:
            # Paused while it runs: no second instance is ever due; the end of the run sets
            # the next time (finish + delay).
            self.ctx.jobs.modify(SYNC_JOB, next_run_time=None)

    def _schedule_next(self, finished: datetime) -> None:
        if self.ctx.jobs.stopping or not self.ctx.is_leader():
            return
        at = finished + self.next_delay()
        with self._mutex:
            self.not_before = at
        self.ctx.jobs.modify(SYNC_JOB, next_run_time=at)

    def _cycle(self, now: datetime) -> datetime:
        """Run one cycle and record its outcome; returns when it finished."""
        started = time.monotonic()
        clients: list[GraphClient] = []
        attempt = _Attempt()
        try:
            self._attempt(now, clients, attempt)
        finally:
            attempt.seconds = time.monotonic() - started
            self._count(attempt, clients)
        finished = utcnow()
        if attempt.error is None:
            self._succeeded(finished, attempt)
        else:
            self._failed(finished, attempt.error, attempt.seconds)
        with tolerated("refresh the license figures"):
            self.ctx.after_cycle()
        return finished

    def _attempt(self, now: datetime, clients: list[GraphClient], attempt: _Attempt) -> None:
        config = self.ctx.settings()
        run_id = str(uuid.uuid4())
        try:
            factory = self._graph_factory(config, clients)
            result = run_cycle(self.ctx.store, config, factory, now, run_id=run_id)
            attempt.outcome, attempt.run_id = result.status, result.run_id
            attempt.applied, attempt.held = result.applied, result.held
        except (Stopping, Cancelled):
            self._mark_interrupted(run_id)
            raise
        except EntrasyncError as exc:
            attempt.error = str(exc)
        except Exception as exc:  # a bug must not end the daemon; the next cycle tries again
            log.exception("cycle crashed")
            attempt.error = f"{type(exc).__name__}: {exc}"

    def _graph_factory(self, config: Config, clients: list[GraphClient]) -> GraphFactory:
        # The stop event cancels a Graph read in progress: SIGTERM never waits for it.
        make = graph_factory(
            config, self.ctx.environ, caches=self._caches, cancel=self.ctx.jobs.stopped
        )

        def factory() -> GraphClient:
            client = make()
            if isinstance(client.settings.credential, ClientSecret):
                scrubber.add(client.settings.credential.value)  # the file may have been rotated
            clients.append(client)
            return client

        return factory

    def _count(self, attempt: _Attempt, clients: list[GraphClient]) -> None:
        requests: dict[tuple[str, str], int] = {}
        for client in clients:
            for key, n in client.counters.snapshot().items():
                requests[key] = requests.get(key, 0) + n
        outcome = attempt.outcome if attempt.outcome in _COUNTED else RunStatus.FAILED
        self.ctx.metrics.count_cycle(
            outcome, attempt.seconds, attempt.applied, attempt.held, requests
        )

    def _succeeded(self, finished: datetime, attempt: _Attempt) -> None:
        recovered_from = self.ctx.streak.succeeded(finished)
        self.ctx.metrics.consecutive_failures.set(0)
        self.ctx.metrics.last_success.set(finished.timestamp())
        log.info(
            "cycle finished",
            run_id=attempt.run_id,
            status=attempt.outcome,
            duration_s=round(attempt.seconds, 3),
            applied=dict(attempt.applied),
            held=dict(attempt.held),
        )
        with tolerated("record the successful cycle"):
            failures.record_success(
                self.ctx.store, self.ctx.settings(), finished, attempt.run_id, self.ctx.host
            )
        if recovered_from:
            log.info("cycles succeed again", after_failures=recovered_from, run_id=attempt.run_id)

    def _failed(self, finished: datetime, error: str, seconds: float) -> None:
        count = self.ctx.streak.failed(finished, error)
        alerted = False
        # A store that is down (or refuses the write) leaves the streak in memory: the
        # backoff still grows.
        with tolerated("record the failed cycle in the store"):
            stored = failures.record_failure(
                self.ctx.store, self.ctx.settings(), finished, error, self.ctx.host
            )
            count = max(count, int(stored["consecutive_failures"]))
            alerted = stored.get("alerted_at") == format_at(finished)
        self.ctx.streak.set_failures(count)
        self.ctx.metrics.consecutive_failures.set(count)
        log.error(
            "cycle failed",
            error=error,
            consecutive_failures=count,
            duration_s=round(seconds, 3),
            retry_in_s=self.next_delay().total_seconds(),
        )
        if alerted:
            log.warning("admins emailed about failing cycles", consecutive_failures=count)

    def _mark_interrupted(self, run_id: str) -> None:
        """The cycle stopped at a transaction boundary or in a Graph read: say so on its run
        record, found by its id (a cycle cut short before its run was recorded has none: the
        update then finds nothing). The record may already say "failed" with the cancelled
        read's message."""
        with (
            self.ctx.gate.bypass(),
            tolerated("mark the interrupted run"),
            self.ctx.store.unit_of_work(utcnow()) as uow,
        ):
            runs.mark_interrupted(uow, [run_id], _INTERRUPTED)
