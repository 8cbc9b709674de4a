"""The daemon's scheduler (APScheduler, ``max_instances=1``, ``coalesce``) and the wrapper
every job runs in: counted (so that a stop can wait for the running ones), never raising into
the scheduler, and for leader jobs gated on still being the leader."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers import SchedulerNotRunningError
from apscheduler.schedulers.background import BackgroundScheduler

from entrasync.daemon.common import iso, log, utcnow
from entrasync.graph import Cancelled
from entrasync.store.gate import Stopping, TransactionGate

HEARTBEAT_JOB = "heartbeat"


class Jobs:
    def __init__(
        self, gate: TransactionGate, is_leader: Callable[[], bool], stopped: threading.Event
    ) -> None:
        self.scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={"default": ThreadPoolExecutor(8)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        self.stopped = stopped  # also cancels Graph reads in progress
        self._gate = gate
        self._is_leader = is_leader
        self._idle = threading.Condition()
        self._running = 0

    @property
    def stopping(self) -> bool:
        return self.stopped.is_set()

    def add(
        self,
        job_id: str,
        fn: Callable[[], None],
        every: timedelta,
        first: datetime,
        *,
        leader: bool = False,
    ) -> None:
        self.scheduler.add_job(
            self._wrap(job_id, fn, leader=leader),
            "interval",
            seconds=every.total_seconds(),
            id=job_id,
            next_run_time=first,
            replace_existing=True,
        )

    def _wrap(self, job_id: str, fn: Callable[[], None], *, leader: bool) -> Callable[[], None]:
        def run() -> None:
            with self._idle:
                if self.stopping or (leader and not self._is_leader()):
                    return
                self._running += 1
            try:
                if leader:
                    with self._gate.leader_work():
                        fn()
                else:
                    fn()
            except (Stopping, Cancelled) as exc:
                log.info("job interrupted", job=job_id, reason=str(exc))
            except Exception:
                log.exception("job failed unexpectedly", job=job_id)
            finally:
                with self._idle:
                    self._running -= 1
                    self._idle.notify_all()

        run.__name__ = job_id
        return run

    def modify(self, job_id: str, **changes: Any) -> None:
        """Change a job that a concurrent step-down or stop may have removed."""
        with contextlib.suppress(JobLookupError):
            self.scheduler.modify_job(job_id, **changes)

    def poke(self, job_id: str) -> None:
        """Run `job_id` now (unless stopping)."""
        if not self.stopping:
            self.modify(job_id, next_run_time=utcnow())

    def remove(self, *job_ids: str) -> None:
        for job_id in job_ids:
            with contextlib.suppress(JobLookupError):
                self.scheduler.remove_job(job_id)

    def reschedule(self, job_id: str, every: timedelta) -> bool:
        """A new interval for `job_id`; False when there is no such job."""
        job = self.scheduler.get_job(job_id)
        if job is None:
            return False
        job.reschedule("interval", seconds=every.total_seconds())
        return True

    def next_runs(self, running: frozenset[str] = frozenset()) -> dict[str, str | None]:
        """Each job's next run (`running` ones say so), the heartbeat aside."""
        runs: dict[str, str | None] = {}
        if self.stopping:
            return runs
        try:
            jobs = self.scheduler.get_jobs()
        except Exception:
            return runs
        for job in jobs:
            if job.id != HEARTBEAT_JOB:
                runs[job.id] = "running" if job.id in running else iso(job.next_run_time)
        return runs

    def stop(self, timeout: float) -> bool:
        """Start no job, wait up to `timeout` seconds for the running ones; False when one
        was still running at the deadline."""
        self.stopped.set()
        with contextlib.suppress(SchedulerNotRunningError):
            self.scheduler.shutdown(wait=False)
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._running and time.monotonic() < deadline:
                self._idle.wait(max(0.05, deadline - time.monotonic()))
            return self._running == 0
