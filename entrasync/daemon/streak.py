"""The daemon's view of the cycles' failure streak and last success, shared by the cycle job
(which writes it on the leader), the heartbeat (which reads the leader's into a standby) and
`/healthz` (which judges by it). Guarded by its own lock, never held during I/O."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from entrasync.daemon.common import parse_iso


@dataclass(frozen=True)
class StreakView:
    failures: int
    last_success: datetime | None
    last_failure: datetime | None
    last_error: str | None


class Streak:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures = 0
        self._last_success: datetime | None = None  # of a cycle run here
        self._store_last_success: datetime | None = None  # of any instance's, from the store
        self._last_failure: datetime | None = None
        self._last_error: str | None = None

    @property
    def failures(self) -> int:
        with self._lock:
            return self._failures

    def restore(self, stored: Mapping[str, Any]) -> None:
        """Continue the streak a previous leader left in the store."""
        with self._lock:
            self._failures = int(stored.get("consecutive_failures", 0))

    def succeeded(self, finished: datetime) -> int:
        """A cycle succeeded; returns how many failures it ended."""
        with self._lock:
            recovered_from, self._failures = self._failures, 0
            self._last_success = finished
        return recovered_from

    def failed(self, finished: datetime, error: str) -> int:
        """A cycle failed; returns the streak counted here."""
        with self._lock:
            self._failures += 1
            self._last_failure = finished
            self._last_error = error
            return self._failures

    def set_failures(self, count: int) -> None:
        with self._lock:
            self._failures = count

    def adopt(self, stored: Mapping[str, Any], last_run: datetime | None, *, leader: bool) -> None:
        """What the store says (every heartbeat): its last success counts for everyone; a
        standby also takes the leader's streak."""
        candidates = [d for d in (parse_iso(stored.get("last_success")), last_run) if d]
        with self._lock:
            self._store_last_success = max(candidates) if candidates else None
            if not leader:
                self._failures = int(stored.get("consecutive_failures", 0))
                self._last_error = stored.get("last_error")
                self._last_failure = parse_iso(stored.get("last_failure"))

    def last_success(self) -> datetime | None:
        with self._lock:
            found = [d for d in (self._last_success, self._store_last_success) if d is not None]
        return max(found) if found else None

    def view(self) -> StreakView:
        best = self.last_success()
        with self._lock:
            return StreakView(self._failures, best, self._last_failure, self._last_error)
