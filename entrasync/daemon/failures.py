"""Failing cycles: backoff before the next try, and the admin emails.

The streak (consecutive failures, since when, whether the admins were told) lives in the
store (``daemon_state['cycles']``), written in the same transaction as the email it causes,
so a standby that takes over continues the streak and nobody is emailed twice. A failure that
cannot be written because the store itself is down counts only in memory (for the backoff):
there would be no outbox to put an email in anyway.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from entrasync.config import Config
from entrasync.domain.audit import format_at
from entrasync.store import daemon_state
from entrasync.store.db import Store
from entrasync.store.outbox import enqueue
from entrasync.store.uow import UnitOfWork

FAILING_TOPIC = "cycles.failing"
RECOVERED_TOPIC = "cycles.recovered"


# However the config came to say otherwise (`schedule.interval = "0s"`, a reload, a bug in
# validation), cycles never follow each other closer than this: no busy loop against Graph.
MIN_DELAY = timedelta(seconds=1)


def next_delay(interval: timedelta, max_backoff: timedelta, failures: int) -> timedelta:
    """Wait before the next cycle: the interval after a success or a first failure, then
    doubling with each further failure, capped at max_backoff (never below the interval),
    and never below MIN_DELAY."""
    base = max(interval, MIN_DELAY)
    if failures <= 1:
        return base
    cap = max(max_backoff, base)
    exponent = min(failures - 1, 32)
    delay: timedelta = min(base * (2**exponent), cap)
    return delay


def record_failure(
    store: Store, config: Config, now: datetime, error: str, host: str
) -> dict[str, Any]:
    """Count a failed cycle; email the admins once when the streak reaches the threshold."""
    with _streak(store, now) as (uow, streak):
        failures = int(streak.get("consecutive_failures", 0)) + 1
        streak.update(
            consecutive_failures=failures,
            failing_since=streak.get("failing_since") or format_at(now),
            last_failure=format_at(now),
            last_error=error,
        )
        threshold = config.daemon.failure_alert_after
        if failures >= threshold and not streak.get("alerted_at"):
            _email_admins(
                uow,
                config,
                FAILING_TOPIC,
                subject=f"entrasync: {failures} sync cycles in a row have failed",
                body=(
                    f"The scheduled sync of entrasync (on {host}) has failed {failures} times in "
                    f"a row since {streak['failing_since']}.\n\nLast error:\n  {error}\n\n"
                    "Until it succeeds again, nobody is untracked, purged or merged. Check "
                    "`entrasync check-config` and the daemon's log. You will get one more "
                    "email when a cycle succeeds again.\n"
                ),
            )
            streak["alerted_at"] = format_at(now)
    return streak


def record_success(
    store: Store, config: Config, now: datetime, run_id: str, host: str
) -> dict[str, Any]:
    """Reset the streak; if the admins were told about it, tell them it is over."""
    with _streak(store, now) as (uow, streak):
        if streak.get("alerted_at"):
            _email_admins(
                uow,
                config,
                RECOVERED_TOPIC,
                subject="entrasync: sync cycles succeed again",
                body=(
                    f"The scheduled sync of entrasync (on {host}) succeeded again in run "
                    f"{run_id}, after {streak.get('consecutive_failures', 0)} failed cycles "
                    f"since {streak.get('failing_since')}.\n\nLast error was:\n  "
                    f"{streak.get('last_error')}\n"
                ),
            )
        fresh = {"consecutive_failures": 0, "last_success": format_at(now), "last_run": run_id}
        streak.clear()
        streak.update(fresh)
    return streak


@contextmanager
def _streak(store: Store, now: datetime) -> Iterator[tuple[UnitOfWork, dict[str, Any]]]:
    """The stored streak, written back as the caller left it, in the same transaction as any
    email it causes (nothing is written if the caller raises)."""
    with store.unit_of_work(now) as uow:
        streak: dict[str, Any] = daemon_state.get(uow.session, daemon_state.CYCLES_KEY) or {}
        yield uow, streak
        daemon_state.put(uow, daemon_state.CYCLES_KEY, streak)


def _email_admins(uow: UnitOfWork, config: Config, topic: str, *, subject: str, body: str) -> None:
    enqueue(
        uow.session,
        topic=topic,
        subject=subject,
        body=body,
        recipients=config.notify.admins,
        now=uow.now,
    )
