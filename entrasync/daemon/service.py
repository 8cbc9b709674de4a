"""`entrasync run`: the scheduled jobs, the leader role, health and metrics, one object.

Threads: the main thread waits for signals (and pings the systemd watchdog); a leadership
thread tries or checks the leader lock every few seconds; APScheduler's worker threads run
the jobs; the health server answers HTTP. Shared state is guarded by one lock and is never
held while doing I/O.

Jobs (APScheduler, ``max_instances=1``, ``coalesce``):

* ``sync`` (leader): one cycle, first right after becoming leader. The job pauses itself
  while it runs and, when done, sets its next run to *finish + delay*: an overrunning cycle
  delays the next instead of stacking, and a failing one backs off (``failures.next_delay``).
* ``retention`` (leader): pending users' data older than ``account.pending_retention``,
  5 s after becoming leader (after the first cycle has started) and then daily.
* ``outbox`` (leader): send due admin emails, every minute.
* ``heartbeat`` (every instance, every 10 s): publish this instance in ``daemon_state``
  (role, next run times: what ``entrasync status`` shows) and, on a standby, read the store's
  last successful cycle for ``/healthz``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers import SchedulerNotRunningError
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import event, func, select, update
from sqlalchemy.exc import SQLAlchemyError

from entrasync.config import Config
from entrasync.daemon import failures, state
from entrasync.daemon.gate import Stopping, TransactionGate
from entrasync.daemon.health import HealthServer, judge
from entrasync.daemon.leader import LeaderLock, leader_lock_for
from entrasync.daemon.logs import get_logger, scrubber
from entrasync.daemon.metrics import CONTENT_TYPE_LATEST, Metrics
from entrasync.domain.audit import format_at
from entrasync.errors import EntrasyncError, SchemaOutOfDate
from entrasync.graph import (
    Cancelled,
    ClientSecret,
    GraphClient,
    MsalCaches,
    settings_from_config,
)
from entrasync.notify import flush_outbox
from entrasync.services.pending import expire_pending_data
from entrasync.store.account import license_status
from entrasync.store.db import Store
from entrasync.store.schema import RunRow
from entrasync.sync.cycle import run_cycle
from entrasync.sync.groups import list_groups

log = get_logger("entrasync.daemon")

LEADER_JOBS = ("sync", "retention", "outbox")
OUTBOX_EVERY = timedelta(minutes=1)
RETENTION_EVERY = timedelta(days=1)
RETENTION_FIRST_AFTER = timedelta(seconds=5)
# A standby that cannot reach the store retries the lock less and less often, but at least
# once a minute, so that it takes over soon after the store is back.
LEASE_MAX_WAIT = timedelta(minutes=1)
_OK_STATUSES = ("ok", "held")
_INTERRUPTED = (
    "interrupted: the daemon stopped or lost the leadership mid-cycle; the next cycle "
    "completes the work"
)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment else None


def _parse(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


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


def _describe(exc: BaseException) -> str:
    """A store error for the log: ours carry a message; one the store layer did not classify
    (a refused write, a constraint, a driver error) is named by type and the driver's own
    message, without the SQL."""
    if isinstance(exc, EntrasyncError):
        return str(exc)
    origin = getattr(exc, "orig", None)
    return f"{type(exc).__name__}: {origin if origin is not None else exc}"


@contextmanager
def _tolerated(what: str) -> Iterator[None]:
    """Bookkeeping around a job (the failure streak, license figures, a run record): a store
    that is down or refuses the write, or a bug here, is logged and never stops the
    schedule."""
    try:
        yield
    except Stopping as exc:  # stopping or stepped down: expected, not worth a warning
        log.info(f"did not {what}", reason=str(exc))
    except (EntrasyncError, SQLAlchemyError) as exc:
        log.warning(f"could not {what}", error=_describe(exc))
    except Exception:
        log.exception(f"could not {what} (this is a bug)")


# run_cycle makes its run's id itself, and an exception that cuts the cycle short does not
# carry it: the id is noted as the run's row is inserted, on the cycle's own thread.
_noted = threading.local()


@event.listens_for(RunRow, "after_insert")
def _note_run(_mapper: Any, _connection: Any, target: RunRow) -> None:
    ids: list[str] | None = getattr(_noted, "ids", None)
    if ids is not None and target.kind == "sync":
        ids.append(target.id)


@contextmanager
def _noting_runs(ids: list[str]) -> Iterator[None]:
    _noted.ids = ids
    try:
        yield
    finally:
        _noted.ids = None


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
        self.host = socket.gethostname()
        self.instance = f"{self.host}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.started_at = _utcnow()
        self.metrics = Metrics()
        self._on_change = on_change or (lambda _status: None)
        self._mutex = threading.RLock()
        self._role = "standby"
        self._last_success: datetime | None = None
        self._store_last_success: datetime | None = None
        self._last_failure: datetime | None = None
        self._last_error: str | None = None
        self._suspect: dict[str, str] = {}
        self._failures = 0
        self._sync_running = False
        self._licenses_at = 0.0
        self._schema_ok = False
        self._schema_error = ""
        self._running_jobs = 0
        # One token for the daemon's life, refreshed by MSAL before expiry (not one per cycle).
        self._msal_caches = MsalCaches()
        self._jobs_idle = threading.Condition(self._mutex)
        self._stop = threading.Event()
        # No cycle starts before this (set when a cycle starts and when it ends): keeps the
        # backoff across a leadership lost and regained.
        self._not_before: datetime | None = None
        self._lease_misses = 0

        self.store = Store(config.store.url, check_schema=False)
        self.gate = TransactionGate(self.store.engine, self.is_leader)
        self.lock: LeaderLock = leader_lock_for(self.store.engine)
        self.scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={"default": ThreadPoolExecutor(8)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        self.server = HealthServer(config.daemon.listen, self.health, self.render_metrics)
        self._leadership = threading.Thread(target=self._leadership_loop, name="leadership")

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Check the schema (a wrong one is fatal: exit 78), serve health, start the jobs and
        make the first try for the lock (so READY=1 already knows the role)."""
        self._check_schema()
        self.server.start()
        self.scheduler.start()
        self.scheduler.add_job(
            self._job(self._heartbeat),
            "interval",
            seconds=state.HEARTBEAT.total_seconds(),
            id="heartbeat",
            next_run_time=_utcnow(),
        )
        self._lease_misses = 0 if self._leadership_step() else 1
        self._leadership.start()
        log.info(
            "daemon started",
            instance=self.instance,
            listen=self.server.address,
            role=self.role,
            interval_s=self.config.schedule.interval.total_seconds(),
            leader_lock=self.lock.description,
            store=self.store.dialect,
        )

    def _check_schema(self) -> None:
        try:
            self.store.require_current_schema()
            self._schema_ok = True
        except SchemaOutOfDate:
            raise
        except (EntrasyncError, SQLAlchemyError) as exc:
            log.warning("store not reachable at start-up; will keep trying", error=_describe(exc))

    def stop(self, timeout: float) -> bool:
        """Let the transaction in progress finish (up to `timeout` seconds), start no new
        one, give up the lock. False when a job was still running at the deadline."""
        # The gate first: a Graph read cancelled by the stop event then finds no transaction
        # to start, so the cycle ends as `Stopping` wherever it was.
        self.gate.close()
        self._stop.set()
        with contextlib.suppress(SchedulerNotRunningError):
            self.scheduler.shutdown(wait=False)
        deadline = time.monotonic() + timeout
        with self._jobs_idle:
            while self._running_jobs and time.monotonic() < deadline:
                self._jobs_idle.wait(max(0.05, deadline - time.monotonic()))
            clean = self._running_jobs == 0
        if self._leadership.is_alive():
            self._leadership.join(timeout=2)
        if clean:
            with self.gate.bypass():
                try:
                    with self.store.transaction() as session:
                        state.remove(session, state.INSTANCE_PREFIX + self.instance)
                except (EntrasyncError, SQLAlchemyError):
                    pass
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
        with self._mutex:
            return self._role

    def is_leader(self) -> bool:
        return self.role == "leader"

    def _leadership_loop(self) -> None:
        while not self._stop.wait(self._lease_wait()):
            try:
                reached = self._leadership_step()
            except Exception:
                log.exception("leadership check failed")
                reached = False
            self._lease_misses = 0 if reached else self._lease_misses + 1

    def _lease_wait(self) -> float:
        daemon = self.config.daemon
        return lease_wait(self.config.schedule.interval, daemon.max_backoff, self._lease_misses)

    def _leadership_step(self) -> bool:
        """Try or check the lock; False when the store (or the lock) could not be reached,
        or its schema is not usable yet: the next step then backs off."""
        if self.stopping:
            return True
        if self.is_leader():
            if not self.lock.still_held():
                self._step_down("the leader lock was lost (store connection broken)")
            return self.lock.last_error is None
        if not self._schema_ok:
            self._check_schema_quietly()
            if not self._schema_ok:
                return False
        if self.lock.try_acquire():
            self._become_leader()
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
        except (EntrasyncError, SQLAlchemyError):
            self._schema_ok = False

    def _become_leader(self) -> None:
        with self._mutex:
            if self._role == "leader" or self.stopping:
                return
            self._role = "leader"
        self.metrics.leader.set(1)
        now = _utcnow()
        self._restore_streak()
        self._close_abandoned_runs(now)
        with self._mutex:
            first = max(now, self._not_before or now)
        self.scheduler.add_job(
            self._job(self._sync, leader=True),
            "interval",
            seconds=self.config.schedule.interval.total_seconds(),
            id="sync",
            next_run_time=first,
            replace_existing=True,
        )
        self.scheduler.add_job(
            self._job(self._retention, leader=True),
            "interval",
            seconds=RETENTION_EVERY.total_seconds(),
            id="retention",
            next_run_time=now + RETENTION_FIRST_AFTER,
            replace_existing=True,
        )
        self.scheduler.add_job(
            self._job(self._flush, leader=True),
            "interval",
            seconds=OUTBOX_EVERY.total_seconds(),
            id="outbox",
            next_run_time=now,
            replace_existing=True,
        )
        self._poke_heartbeat()
        log.info("became the leader", instance=self.instance, leader_lock=self.lock.description)
        self._on_change("leader")

    def _step_down(self, reason: str) -> None:
        with self._mutex:
            if self._role != "leader":
                return
            self._role = "standby"
        self.metrics.leader.set(0)
        for job_id in LEADER_JOBS:
            with contextlib.suppress(JobLookupError):
                self.scheduler.remove_job(job_id)
        self.lock.release()
        log.warning("stepped down to standby", reason=reason, instance=self.instance)
        self._poke_heartbeat()
        self._on_change("standby")

    def _close_abandoned_runs(self, now: datetime) -> None:
        """A sync run still "running" when the lock is taken belonged to a leader that died
        mid-cycle (a live one would still hold the lock): record it as failed. Its work is
        redone by the first cycle (every action is idempotent)."""
        closed: Any = None
        with _tolerated("close abandoned runs"), self.store.transaction() as session:
            closed = session.execute(
                update(RunRow)
                .where(RunRow.kind == "sync", RunRow.status == "running")
                .values(
                    status="failed",
                    finished_at=now,
                    message="abandoned: the leader stopped mid-cycle (killed or lost its "
                    "lock); the next cycle completes the work",
                )
            )
        count = int(getattr(closed, "rowcount", 0) or 0)
        if count:
            log.warning("closed runs abandoned by a previous leader", runs=count)

    def _restore_streak(self) -> None:
        """Continue the failure streak a previous leader left in the store."""
        try:
            with self.store.reading() as session:
                streak = state.get(session, state.CYCLES_KEY) or {}
        except (EntrasyncError, SQLAlchemyError):
            return
        with self._mutex:
            self._failures = int(streak.get("consecutive_failures", 0))

    # --- jobs ----------------------------------------------------------------------------

    def _job(self, fn: Callable[[], None], *, leader: bool = False) -> Callable[[], None]:
        """Every job: counted (for a clean stop), never raising into the scheduler, and for
        leader jobs gated on still being the leader."""

        def run() -> None:
            with self._mutex:
                if self.stopping or (leader and self._role != "leader"):
                    return
                self._running_jobs += 1
            try:
                if leader:
                    with self.gate.leader_work():
                        fn()
                else:
                    fn()
            except (Stopping, Cancelled) as exc:
                log.info("job interrupted", job=fn.__name__.lstrip("_"), reason=str(exc))
            except Exception:
                log.exception("job failed unexpectedly", job=fn.__name__.lstrip("_"))
            finally:
                with self._jobs_idle:
                    self._running_jobs -= 1
                    self._jobs_idle.notify_all()

        run.__name__ = fn.__name__
        return run

    def _sync(self) -> None:
        """One cycle; whatever happens in it or after it, the next one is scheduled (a
        failure that skipped this would stop the cycles for good)."""
        if not self.lock.still_held():
            self._step_down("the leader lock was lost (store connection broken)")
            return
        now = _utcnow()
        with self._mutex:
            # From the start: a cycle cut short by a lost leadership still spaces the next.
            self._not_before = now + self._next_delay()
        self._set_sync_running(True)
        finished = now
        try:
            finished = self._cycle(now)
        finally:
            self._set_sync_running(False)
            self._schedule_next_sync(finished)
            self._poke_heartbeat()
            self._on_change(self.role)

    def _cycle(self, now: datetime) -> datetime:
        """Run one cycle and record its outcome; returns when it finished."""
        config = self.config
        started = time.monotonic()
        clients: list[GraphClient] = []

        def graph_factory() -> GraphClient:
            settings = settings_from_config(config.entra, self.environ)
            if isinstance(settings.credential, ClientSecret):
                scrubber.add(settings.credential.value)  # the file may have been rotated
            # The stop event cancels a Graph read in progress: SIGTERM never waits for it.
            client = GraphClient(settings, self._msal_caches, cancel=self._stop)
            clients.append(client)
            return client

        outcome, error, run_id = "failed", None, None
        applied: Mapping[str, int] = {}
        held: Mapping[str, int] = {}
        run_ids: list[str] = []
        try:
            with _noting_runs(run_ids):
                result = run_cycle(self.store, config, graph_factory, now)
            outcome, run_id, applied, held = (
                result.status,
                result.run_id,
                result.applied,
                result.held,
            )
        except (Stopping, Cancelled):
            self._mark_interrupted(run_ids)
            raise
        except EntrasyncError as exc:
            error = str(exc)
        except Exception as exc:  # a bug must not end the daemon; the next cycle tries again
            log.exception("cycle crashed")
            error = f"{type(exc).__name__}: {exc}"
        finally:
            seconds = time.monotonic() - started
            self._count_cycle(outcome, seconds, applied, held, clients)
        finished = _utcnow()
        if error is None:
            self._cycle_succeeded(finished, run_id or "", outcome, seconds, applied, held)
        else:
            self._cycle_failed(finished, error, seconds)
        with _tolerated("refresh the license figures"):
            self._refresh_licenses(force=True)
        return finished

    def _count_cycle(
        self,
        outcome: str,
        seconds: float,
        applied: Mapping[str, int],
        held: Mapping[str, int],
        clients: list[GraphClient],
    ) -> None:
        requests: dict[tuple[str, str], int] = {}
        for client in clients:
            for key, n in client.counters.snapshot().items():
                requests[key] = requests.get(key, 0) + n
        self.metrics.count_cycle(
            outcome if outcome in ("ok", "held", "dry-run") else "failed",
            seconds,
            applied,
            held,
            requests,
        )

    def _cycle_succeeded(
        self,
        finished: datetime,
        run_id: str,
        outcome: str,
        seconds: float,
        applied: Mapping[str, int],
        held: Mapping[str, int],
    ) -> None:
        with self._mutex:
            recovered_from = self._failures
            self._failures = 0
            self._last_success = finished
        self.metrics.consecutive_failures.set(0)
        self.metrics.last_success.set(finished.timestamp())
        log.info(
            "cycle finished",
            run_id=run_id,
            status=outcome,
            duration_s=round(seconds, 3),
            applied=dict(applied),
            held=dict(held),
        )
        with _tolerated("record the successful cycle"):
            failures.record_success(self.store, self.config, finished, run_id, self.host)
        if recovered_from:
            log.info("cycles succeed again", after_failures=recovered_from, run_id=run_id)

    def _cycle_failed(self, finished: datetime, error: str, seconds: float) -> None:
        with self._mutex:
            self._failures += 1
            self._last_failure = finished
            self._last_error = error
            count = self._failures
        alerted = False
        # A store that is down (or refuses the write) leaves the streak in memory: the
        # backoff still grows.
        with _tolerated("record the failed cycle in the store"):
            streak = failures.record_failure(self.store, self.config, finished, error, self.host)
            count = max(count, int(streak["consecutive_failures"]))
            alerted = streak.get("alerted_at") == format_at(finished)
        with self._mutex:
            self._failures = count
        self.metrics.consecutive_failures.set(count)
        log.error(
            "cycle failed",
            error=error,
            consecutive_failures=count,
            duration_s=round(seconds, 3),
            retry_in_s=self._next_delay().total_seconds(),
        )
        if alerted:
            log.warning("admins emailed about failing cycles", consecutive_failures=count)

    def _next_delay(self) -> timedelta:
        with self._mutex:
            count = self._failures
        return failures.next_delay(
            self.config.schedule.interval, self.config.daemon.max_backoff, count
        )

    def _schedule_next_sync(self, finished: datetime) -> None:
        if self.stopping or not self.is_leader():
            return
        at = finished + self._next_delay()
        with self._mutex:
            self._not_before = at
        self._modify("sync", next_run_time=at)

    def _set_sync_running(self, running: bool) -> None:
        with self._mutex:
            self._sync_running = running
        if running:
            # Paused while it runs: no second instance is ever due; the end of the run sets
            # the next time (finish + delay).
            self._modify("sync", next_run_time=None)

    def _mark_interrupted(self, run_ids: list[str]) -> None:
        """The cycle stopped at a transaction boundary or in a Graph read: say so on its run
        record, found by its id (a cycle cut short before its run was recorded has none).
        The record may already say "failed" with the cancelled read's message."""
        if not run_ids:
            return
        with (
            self.gate.bypass(),
            _tolerated("mark the interrupted run"),
            self.store.transaction() as session,
        ):
            session.execute(
                update(RunRow)
                .where(RunRow.id.in_(run_ids), RunRow.status.in_(("running", "failed")))
                .values(status="failed", finished_at=_utcnow(), message=_INTERRUPTED)
            )

    def _retention(self) -> None:
        now = _utcnow()
        run_id = str(uuid.uuid4())
        try:
            result = expire_pending_data(
                self.store, now, self.config.account.pending_retention, run_id=run_id
            )
        except Stopping:
            raise
        except (EntrasyncError, SQLAlchemyError) as exc:
            log.warning("pending retention failed; retried tomorrow", error=_describe(exc))
            return
        self.metrics.retention_rows.inc(result.rows_deleted)
        log.info(
            "pending retention",
            run_id=run_id,
            rows_deleted=result.rows_deleted,
            users=len(result.users),
        )

    def _flush(self) -> None:
        try:
            result = flush_outbox(self.store, self.config.notify, _utcnow())
        except Stopping:
            raise
        except (EntrasyncError, SQLAlchemyError) as exc:
            # Retried at the next run (every minute); SMTP trouble never gets here, it is
            # recorded on the rows, each retried with its own backoff.
            log.warning("outbox flush failed", error=_describe(exc))
            return
        self.metrics.emails_sent.inc(result.sent)
        if result.sent or result.failed or result.released:
            log.info(
                "outbox flushed", sent=result.sent, failed=result.failed, released=result.released
            )

    def _modify(self, job_id: str, **changes: Any) -> None:
        """Change a job that a concurrent step-down or stop may have removed."""
        with contextlib.suppress(JobLookupError):
            self.scheduler.modify_job(job_id, **changes)

    def _poke_heartbeat(self) -> None:
        if not self.stopping:
            self._modify("heartbeat", next_run_time=_utcnow())

    def _heartbeat(self) -> None:
        now = _utcnow()
        value = {
            "host": self.host,
            "pid": os.getpid(),
            "role": self.role,
            "listen": self.server.address,
            "started_at": _iso(self.started_at),
            "jobs": self.next_runs(),
        }
        try:
            with self.store.transaction() as session:
                state.put(session, state.INSTANCE_PREFIX + self.instance, value, now)
                if self.is_leader():
                    state.prune_dead(session, now)
            with self.store.reading() as session:
                streak = state.get(session, state.CYCLES_KEY) or {}
                last_run = session.scalar(
                    select(func.max(RunRow.finished_at)).where(
                        RunRow.kind == "sync", RunRow.status.in_(_OK_STATUSES)
                    )
                )
        except Stopping:
            raise
        except (EntrasyncError, SQLAlchemyError) as exc:
            log.warning("heartbeat: store not reachable", error=_describe(exc))
            return
        candidates = [d for d in (_parse(streak.get("last_success")), last_run) if d is not None]
        with self._mutex:
            self._store_last_success = max(candidates) if candidates else None
            if self._role != "leader":
                self._failures = int(streak.get("consecutive_failures", 0))
                self._last_error = streak.get("last_error")
                self._last_failure = _parse(streak.get("last_failure"))
        self._refresh_licenses()
        best = self.last_success()
        if best is not None:
            self.metrics.last_success.set(best.timestamp())

    def _refresh_licenses(self, force: bool = False) -> None:
        if not force and time.monotonic() - self._licenses_at < max(
            30.0, self.config.schedule.interval.total_seconds()
        ):
            return
        try:
            with self.store.reading() as session:
                figures = license_status(session, _utcnow())
                groups = list_groups(session, self.config)
        except (EntrasyncError, SQLAlchemyError) as exc:
            log.debug("license figures not refreshed", error=_describe(exc))
            return
        self._licenses_at = time.monotonic()
        self.metrics.set_licenses(figures.used, figures.purchased, figures.pending)
        self.metrics.set_suspect([(g.id, g.kind, g.state == "suspect") for g in groups])
        suspect = {g.id: g.detail or g.state for g in groups if g.state == "suspect"}
        with self._mutex:
            self._suspect = suspect
        for group, why in suspect.items():
            log.warning("watched group is suspect", group=group, why=why)

    # --- views ---------------------------------------------------------------------------

    def next_runs(self) -> dict[str, str | None]:
        runs: dict[str, str | None] = {}
        if self.stopping:
            return runs
        try:
            jobs = self.scheduler.get_jobs()
        except Exception:
            return runs
        for job in jobs:
            if job.id == "heartbeat":
                continue
            runs[job.id] = _iso(job.next_run_time)
        with self._mutex:
            if self._sync_running and "sync" in runs:
                runs["sync"] = "running"
        return runs

    def last_success(self) -> datetime | None:
        with self._mutex:
            found = [d for d in (self._last_success, self._store_last_success) if d is not None]
        return max(found) if found else None

    def health(self) -> tuple[int, dict[str, Any]]:
        now = _utcnow()
        last = self.last_success()
        with self._mutex:
            role, failures_, last_failure, last_error = (
                self._role,
                self._failures,
                self._last_failure,
                self._last_error,
            )
        interval = self.config.schedule.interval
        verdict = judge(now, interval, self.started_at, last, failures_)
        with self._mutex:
            suspect = dict(self._suspect)
        body = {
            # A suspect watched group: cycles run, but decisions from that group are paused.
            "status": "degraded" if suspect and verdict.status == "ok" else verdict.status,
            "suspect_groups": suspect,
            "healthy": verdict.healthy,
            "reason": verdict.reason,
            "role": role,
            "last_success": _iso(last),
            "last_failure": _iso(last_failure),
            "last_error": last_error,
            "consecutive_failures": failures_,
            "interval_s": interval.total_seconds(),
            "instance": self.instance,
            "pid": os.getpid(),
            "started_at": _iso(self.started_at),
            "next_runs": self.next_runs(),
            "leader_lock": self.lock.description,
        }
        return (200 if verdict.healthy else 503), body

    def render_metrics(self) -> tuple[bytes, str]:
        return self.metrics.render(), CONTENT_TYPE_LATEST

    def status_line(self) -> str:
        _code, body = self.health()
        nxt = body["next_runs"].get("sync")
        text = f"{body['role']}, {body['status']}"
        if body["last_success"]:
            text += f", last success {body['last_success']}"
        if nxt:
            text += f", next sync {nxt}"
        return text

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
        if new.schedule.interval != old_interval and self.is_leader():
            job = self.scheduler.get_job("sync")
            if job is not None:
                job.reschedule("interval", seconds=new.schedule.interval.total_seconds())
                with self._mutex:
                    running = self._sync_running
                if running:
                    self._modify("sync", next_run_time=None)
            self._poke_heartbeat()
        return kept
