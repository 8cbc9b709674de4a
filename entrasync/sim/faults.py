"""Fault injection and the request log for the emulator.

A fault is a rule: requests whose path (with query) matches `path` (a regular expression,
searched) are, after `skip` matching requests have passed untouched, answered with the fault
`times` times (None = until cleared: a storm). A fault can delay the response (`delay`,
then either the normal answer or `status`), answer with an HTTP `status` (and optionally
`Retry-After` and an OData error `code`), answer `status` with a `text/html` page instead of
JSON (`html`: what a gateway or proxy in front of Graph sends), or drop the connection
without answering.

Rules also apply to the sub-requests of a JSON batch (`POST /v1.0/$batch`): `path` is then
matched against `/v1.0` + the sub-request's relative url, and a matching rule answers that
sub-request alone, with its status, an OData error body and `Retry-After` in the
sub-response's headers. That is how Graph throttles inside a batch: "Requests in a batch are
evaluated individually against throttling limits" and each throttled one carries its own
`Retry-After` (https://learn.microsoft.com/graph/throttling#throttling-and-batching,
https://learn.microsoft.com/graph/json-batching). A dropped connection or an HTML page has no
meaning inside a batch body, so such a rule answers the sub-request 503.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Fault:
    path: str
    status: int | None = None
    retry_after: str | None = None
    code: str | None = None
    delay: float = 0.0
    drop: bool = False
    html: bool = False
    times: int | None = 1
    skip: int = 0
    hits: int = 0
    seen: int = 0
    _pattern: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._pattern = re.compile(self.path)

    def active(self) -> bool:
        return self.times is None or self.hits < self.times


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    status: int  # 0 when the connection was dropped
    started: float  # time.monotonic()
    duration: float


class Faults:
    """The active fault rules (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[Fault] = []

    def add(
        self,
        path: str,
        *,
        status: int | None = None,
        retry_after: str | float | None = None,
        code: str | None = None,
        delay: float = 0.0,
        drop: bool = False,
        html: bool = False,
        times: int | None = 1,
        skip: int = 0,
    ) -> Fault:
        """Add a rule. `html` answers `status` (502 when not given) with a text/html page."""
        if html and status is None:
            status = 502
        fault = Fault(
            path=path,
            status=status,
            retry_after=None if retry_after is None else str(retry_after),
            code=code,
            delay=delay,
            drop=drop,
            html=html,
            times=times,
            skip=skip,
        )
        with self._lock:
            self._rules.append(fault)
        return fault

    def throttle(self, path: str, *, times: int | None, retry_after: str | float = 1) -> Fault:
        """429 TooManyRequests with Retry-After, `times` times (None: a storm)."""
        return self.add(path, status=429, retry_after=retry_after, times=times)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def match(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self._rules:
                if not fault.active() or not fault._pattern.search(path):
                    continue
                fault.seen += 1
                if fault.seen <= fault.skip:
                    continue
                fault.hits += 1
                return fault
        return None


class RequestLog:
    """Every request the emulator answered (or dropped), in order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []

    def add(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)

    def records(self, path: str | None = None, status: int | None = None) -> list[RequestRecord]:
        """Records whose path matches the regular expression `path` (searched) and status."""
        pattern = re.compile(path) if path else None
        with self._lock:
            return [
                r
                for r in self._records
                if (pattern is None or pattern.search(r.path))
                and (status is None or r.status == status)
            ]

    def count(self, path: str | None = None, status: int | None = None) -> int:
        return len(self.records(path, status))

    def clear(self) -> None:
        with self._lock:
            self._records.clear()


def now() -> float:
    return time.monotonic()
