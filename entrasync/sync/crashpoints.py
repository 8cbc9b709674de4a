"""Fault injection for the crash-safety tests: `ENTRASYNC_CRASH_AT=name:N` makes the process
SIGKILL itself the N-th time it passes the named point. Unset (always, in production), a
crash point costs one dictionary lookup."""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV = "ENTRASYNC_CRASH_AT"
_hits: Counter[str] = Counter()


def crashpoint(name: str) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    point, _, count = spec.partition(":")
    if point != name:
        return
    _hits[name] += 1
    if _hits[name] == int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
