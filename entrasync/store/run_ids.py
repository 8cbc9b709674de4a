"""The ids of the sync runs a thread records, as their rows are inserted.

`run_cycle` makes its run's id itself, and an exception that cuts the cycle short does not
carry it; the daemon needs it to mark that run interrupted. The id is noted as the run's row
is inserted, on the cycle's own thread.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from entrasync.store.runs import RunKind
from entrasync.store.schema import RunRow

_noted = threading.local()


@event.listens_for(RunRow, "after_insert")
def _note_run(_mapper: Any, _connection: Any, target: RunRow) -> None:
    ids: list[str] | None = getattr(_noted, "ids", None)
    if ids is not None and target.kind == RunKind.SYNC:
        ids.append(target.id)


@contextmanager
def noting_sync_runs(ids: list[str]) -> Iterator[None]:
    """Append to `ids` the id of every sync run this thread inserts inside the block."""
    _noted.ids = ids
    try:
        yield
    finally:
        _noted.ids = None
