"""One retry policy for every Graph and identity-platform request (tenacity).

* 429, 503 and 504 honour `Retry-After` (delta-seconds, fractions allowed, or an HTTP date);
  without it, and for 500/502, connection errors and timeouts, the wait is exponential
  backoff with full jitter (`wait_random_exponential`).
* Bounded twice: by attempts (`max_attempts`, first try included) and by time: a retry whose
  wait would end past `max_total` seconds since the first try is not started.
* The SDK's own RetryHandler is removed from its middleware (see client.py) so this is the
  only policy; MSAL gets a plain session (no urllib3 retries) for the same reason.

`RequestCounters` counts every HTTP attempt (not every logical request): the daemon exports
it as a Prometheus counter labelled by api (`graph`, `login`) and status (`200`, `429`, …,
`error` for a connection failure or timeout).

Cancellation: a client given a `threading.Event` stops when it is set. `retry_sync` waits on
the event instead of `time.sleep` (`cancellable_sleep`), so a retry wait ends at once with
`Cancelled`; async retries are cancelled with the task that runs them (client.py).
"""

from __future__ import annotations

import email.utils
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_random_exponential,
)

from entrasync.errors import GraphUnavailable
from entrasync.graph.settings import RetryPolicy

T = TypeVar("T")

RETRY_AFTER_STATUSES = frozenset({429, 503, 504})
BACKOFF_STATUSES = frozenset({500, 502})


class RequestCounters:
    """Thread-safe counts of HTTP attempts by (api, status)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()

    def add(self, api: str, status: str) -> None:
        with self._lock:
            self._counts[(api, status)] += 1

    def snapshot(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(self._counts)

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def by_status(self, api: str | None = None) -> dict[str, int]:
        out: Counter[str] = Counter()
        for (counted_api, status), n in self.snapshot().items():
            if api is None or api == counted_api:
                out[status] += n
        return dict(out)


class Cancelled(GraphUnavailable):
    """The caller's cancel event was set: the request or retry wait in progress was
    abandoned (exit 69, like any Graph read that did not complete)."""


def cancellable_sleep(cancel: threading.Event | None, what: str) -> Callable[[float], None]:
    """A `time.sleep` that raises Cancelled as soon as `cancel` is set."""

    def sleep(seconds: float) -> None:
        if cancel is None:
            time.sleep(seconds)
        elif cancel.wait(seconds):
            raise Cancelled(f"{what}: cancelled while waiting to retry")

    return sleep


@dataclass
class Transient(Exception):
    """A failed attempt worth retrying. `retry_after` is the server's hint in seconds."""

    reason: str
    retry_after: float | None = None
    status: int | None = None

    def __str__(self) -> str:
        return self.reason


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: `120`, `1.5` or an HTTP date."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = datetime.fromtimestamp(now if now is not None else time.time(), UTC)
    return max(0.0, (when - current).total_seconds())


def header(headers: Mapping[str, str] | Any, name: str) -> str | None:
    """Case-insensitive header lookup on httpx.Headers, a dict, or None."""
    if not headers:
        return None
    getter = getattr(headers, "get", None)
    value = getter(name) if getter else None
    if value is not None:
        return str(value)
    for key, item in dict(headers).items():
        if str(key).lower() == name.lower():
            return str(item)
    return None


def _wait(policy: RetryPolicy) -> Callable[[RetryCallState], float]:
    backoff = wait_random_exponential(multiplier=policy.backoff_base, max=policy.backoff_max)

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, Transient) and exc.retry_after is not None:
            return min(exc.retry_after, policy.max_retry_after)
        return float(backoff(state))

    return wait


def _kwargs(policy: RetryPolicy) -> dict[str, Any]:
    return {
        "retry": retry_if_exception(lambda e: isinstance(e, Transient)),
        "wait": _wait(policy),
        "stop": stop_after_attempt(policy.max_attempts) | stop_before_delay(policy.max_total),
        "reraise": True,
    }


async def retry_async(policy: RetryPolicy, attempt: Callable[[], Awaitable[T]]) -> T:
    """Run `attempt` until it succeeds, raises a non-Transient, or the bounds are hit (the
    last Transient is then re-raised for the caller to map)."""
    async for try_ in AsyncRetrying(**_kwargs(policy)):
        with try_:
            return await attempt()
    raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover


def retry_sync(
    policy: RetryPolicy, attempt: Callable[[], T], sleep: Callable[[float], None] = time.sleep
) -> T:
    for try_ in Retrying(sleep=sleep, **_kwargs(policy)):
        with try_:
            return attempt()
    raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover
