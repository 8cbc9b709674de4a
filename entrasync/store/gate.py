"""A gate on the store's transactions, so that stopping and stepping down are clean.

Registered as the first ``begin`` listener of the store's engine: once closed (SIGTERM), no
new transaction starts — the one in progress finishes and commits — and the cycle stops at
that boundary with a `StoreUnavailable` ("the daemon is stopping"). Work done for the leader
(cycles, retention, the outbox) is marked per thread; when this instance stops being the
leader, such work cannot start another transaction either, so a deposed leader never acts
without the lock for longer than the transaction it was in.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event

from entrasync.errors import StoreUnavailable


class Stopping(StoreUnavailable):
    """A transaction refused because the daemon is stopping or lost the leadership."""


class TransactionGate:
    def __init__(self, engine: Engine, is_leader: Callable[[], bool]) -> None:
        self._closed = False
        self._is_leader = is_leader
        self._local = threading.local()
        self._engine = engine
        event.listen(engine, "begin", self._check, insert=True)

    def close(self) -> None:
        self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    @contextmanager
    def bypass(self) -> Iterator[None]:
        """Bookkeeping on the way out (marking an interrupted run, the instance row)."""
        previous = getattr(self._local, "bypass", False)
        self._local.bypass = True
        try:
            yield
        finally:
            self._local.bypass = previous

    @contextmanager
    def leader_work(self) -> Iterator[None]:
        self._local.leader = True
        try:
            yield
        finally:
            self._local.leader = False

    def _check(self, _conn: Any) -> None:
        if getattr(self._local, "bypass", False):
            return
        if self._closed:
            raise Stopping("the daemon is stopping: no new transaction is started")
        if getattr(self._local, "leader", False) and not self._is_leader():
            raise Stopping("this instance is no longer the leader: the work is left to the new one")

    def remove(self) -> None:
        if event.contains(self._engine, "begin", self._check):
            event.remove(self._engine, "begin", self._check)
