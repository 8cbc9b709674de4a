"""Fault injection and the request log for the emulator.

Rules
-----
A fault is a rule: requests whose path (with query) matches `path` (a regular expression,
searched) are, after `skip` matching requests have passed untouched, answered with the fault
`times` times (None = until cleared: a storm). A fault can

* delay the response (`delay`, then either the normal answer or `status`): a slow or hung
  endpoint, for timeouts and cancellation;
* answer with an HTTP `status` (and optionally `Retry-After` and an OData error `code`);
* answer `status` with a `text/html` page instead of JSON (`html`: what a gateway or a proxy
  in front of Graph or the identity platform sends; `status=200` is a proxy's login page).
  With `echo` the page repeats the request body, as a login page re-posting a form does:
  a client must never print such a page (it can carry the client secret);
* drop the connection without answering (`drop`: a reset connection).

Rules match the identity platform's paths too (`/oauth2/v2.0/token`, the OpenID
configuration document), so every kind of fault can be put on the token endpoint.

Rules also apply to the sub-requests of a JSON batch (`POST /v1.0/$batch`): `path` is then
matched against `/v1.0` + the sub-request's relative url, and a matching rule answers that
sub-request alone, with its status, an OData error body and `Retry-After` in the
sub-response's headers. That is how Graph throttles inside a batch: "Requests in a batch are
evaluated individually against throttling limits" and each throttled one carries its own
`Retry-After` (https://learn.microsoft.com/graph/throttling#throttling-and-batching,
https://learn.microsoft.com/graph/json-batching). An `html` rule gives the sub-request its
status with a `text/html` body, base64 encoded as json-batching.md says non-JSON bodies are;
a dropped connection has no meaning inside a batch body, so such a rule answers the
sub-request 503.

Random faults (soak tests)
--------------------------
`faults.random(rate=0.2, seed=7)` faults a fraction `rate` of the requests it covers, drawn
from a seeded RNG, until `faults.clear()` (or `faults.random(rate=0)`). It covers, by
default (`RANDOM_PATHS`), the delta requests, `POST /$batch`, the sub-requests of a batch
and the token endpoint. Each faulted request gets one of `kinds` (default: all of
`FaultKind`), chosen uniformly among the kinds that make sense for it:

* `THROTTLE`: 429 with `Retry-After` drawn from `retry_after` (seconds, default 0–1);
* `UNAVAILABLE`: 503 with a JSON error body and `Retry-After`;
* `GATEWAY_HTML`: 502 with an HTML page;
* `RESET`: the connection is dropped (a sub-request gets 503 instead);
* `EXPIRED_GONE`, `EXPIRED_BAD_REQUEST`, `RESYNC_REQUIRED`: the delta token is refused
  (410 `syncStateNotFound`, 400 `syncStateNotFound`, 400 `resyncRequired`), only on the
  first request of an incremental round (it carries a `$deltatoken`): an initial request
  has no state to expire, and a token that lives seven days expires between rounds, not
  between the pages of one (a client restarts a stream at most twice per round).

Explicit rules are matched first; a random draw is made only for requests no rule took.
`faults.injected` counts what was injected by kind, `faults.drawn` the requests covered::

    emu.faults.random(rate=0.25, seed=42)                 # everything, 25 %
    emu.faults.random(rate=0.2, seed=1, kinds={FaultKind.THROTTLE, FaultKind.RESET},
                      retry_after=(0.0, 0.5))
    ...
    assert sum(emu.faults.injected.values()) >= 0.15 * emu.faults.drawn
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum


@dataclass
class Fault:
    path: str
    status: int | None = None
    retry_after: str | None = None
    code: str | None = None
    delay: float = 0.0
    drop: bool = False
    html: bool = False
    echo: bool = False
    times: int | None = 1
    skip: int = 0
    hits: int = 0
    seen: int = 0
    _pattern: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._pattern = re.compile(self.path)

    def active(self) -> bool:
        return self.times is None or self.hits < self.times


class FaultKind(Enum):
    """What a random fault does to a request (see the module docstring)."""

    THROTTLE = "429"
    UNAVAILABLE = "503"
    GATEWAY_HTML = "502 html"
    RESET = "reset"
    EXPIRED_GONE = "410 syncStateNotFound"
    EXPIRED_BAD_REQUEST = "400 syncStateNotFound"
    RESYNC_REQUIRED = "400 resyncRequired"


EXPIRY_KINDS = frozenset(
    {FaultKind.EXPIRED_GONE, FaultKind.EXPIRED_BAD_REQUEST, FaultKind.RESYNC_REQUIRED}
)
# Delta requests, $batch, the sub-requests entrasync batches (checkMemberGroups, GET
# /users/{id}) and the token endpoint.
RANDOM_PATHS = (
    r"^/v1\.0/(users|groups)/(microsoft\.graph\.)?delta"
    r"|^/v1\.0/\$batch"
    r"|^/v1\.0/users/[^/?]+(/(microsoft\.graph\.)?checkMemberGroups|\?)"
    r"|/oauth2/v2\.0/token"
)
_DELTA_TOKEN = re.compile(r"[?&](%24|\$)deltatoken=", re.IGNORECASE)
_DELTA = re.compile(r"/delta\b")


@dataclass
class _RandomFaults:
    rate: float
    kinds: tuple[FaultKind, ...]
    retry_after: tuple[float, float]
    pattern: re.Pattern[str]
    rng: random.Random

    def draw(self, path: str) -> tuple[FaultKind, Fault] | None:
        if self.rate <= 0 or self.rng.random() >= self.rate:
            return None
        expirable = bool(_DELTA.search(path) and _DELTA_TOKEN.search(path))
        kinds = [k for k in self.kinds if expirable or k not in EXPIRY_KINDS]
        if not kinds:
            return None
        kind = self.rng.choice(kinds)
        return kind, _fault_of(kind, path, self._retry_after())

    def _retry_after(self) -> str:
        low, high = self.retry_after
        return f"{self.rng.uniform(low, high):.2f}"


def _fault_of(kind: FaultKind, path: str, retry_after: str) -> Fault:
    if kind is FaultKind.THROTTLE:
        return Fault(path=re.escape(path), status=429, retry_after=retry_after)
    if kind is FaultKind.UNAVAILABLE:
        return Fault(path=re.escape(path), status=503, retry_after=retry_after)
    if kind is FaultKind.GATEWAY_HTML:
        return Fault(path=re.escape(path), status=502, html=True)
    if kind is FaultKind.RESET:
        return Fault(path=re.escape(path), drop=True)
    status = 410 if kind is FaultKind.EXPIRED_GONE else 400
    code = "resyncRequired" if kind is FaultKind.RESYNC_REQUIRED else "syncStateNotFound"
    return Fault(path=re.escape(path), status=status, code=code)


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    status: int  # 0 when the connection was dropped
    started: float  # time.monotonic()
    duration: float


class Faults:
    """The active fault rules and random faults (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[Fault] = []
        self._random: _RandomFaults | None = None
        self.injected: Counter[FaultKind] = Counter()
        self.drawn = 0

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
        echo: bool = False,
        times: int | None = 1,
        skip: int = 0,
    ) -> Fault:
        """Add a rule. `html` answers `status` (502 when not given) with a text/html page;
        `echo` puts the request body into that page."""
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
            echo=echo,
            times=times,
            skip=skip,
        )
        with self._lock:
            self._rules.append(fault)
        return fault

    def throttle(self, path: str, *, times: int | None, retry_after: str | float = 1) -> Fault:
        """429 TooManyRequests with Retry-After, `times` times (None: a storm)."""
        return self.add(path, status=429, retry_after=retry_after, times=times)

    def random(
        self,
        *,
        rate: float,
        seed: int | None = None,
        kinds: Iterable[FaultKind] = tuple(FaultKind),
        path: str = RANDOM_PATHS,
        retry_after: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        """Fault a fraction `rate` (0–1) of the requests matching `path`, with a kind drawn
        from `kinds`, from an RNG seeded with `seed`. Replaces earlier random faults."""
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be between 0 and 1, not {rate}")
        spec = _RandomFaults(rate, tuple(kinds), retry_after, re.compile(path), random.Random(seed))
        with self._lock:
            self._random = spec

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
            self._random = None

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
            return self._draw(path)

    def _draw(self, path: str) -> Fault | None:
        if self._random is None or not self._random.pattern.search(path):
            return None
        self.drawn += 1
        drawn = self._random.draw(path)
        if drawn is None:
            return None
        self.injected[drawn[0]] += 1
        return drawn[1]


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
