"""What every part of the daemon shares: its logger, the clock, ISO times, and the rule that
bookkeeping around a job never stops the schedule."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from entrasync.daemon.logs import get_logger
from entrasync.store.errors import STORE_ERRORS, describe
from entrasync.store.gate import Stopping

log: Any = get_logger("entrasync.daemon")
T = TypeVar("T")


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment else None


def parse_iso(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@contextmanager
def tolerated(what: str) -> Iterator[None]:
    """Bookkeeping around a job (the failure streak, license figures, a run record): a store
    that is down or refuses the write, or a bug here, is logged and never stops the
    schedule."""
    try:
        yield
    except Stopping as exc:  # stopping or stepped down: expected, not worth a warning
        log.info(f"did not {what}", reason=str(exc))
    except STORE_ERRORS as exc:
        log.warning(f"could not {what}", error=describe(exc))
    except Exception:
        log.exception(f"could not {what} (this is a bug)")


def attempt(job: Callable[[], T], failure: str) -> T | None:
    """`job()`, or None when the store fails it: logged as `failure`, left to the job's next
    run. Stopping is no failure: it goes on up to the scheduler."""
    try:
        return job()
    except Stopping:
        raise
    except STORE_ERRORS as exc:
        log.warning(failure, error=describe(exc))
        return None
