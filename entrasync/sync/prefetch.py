"""Read-ahead: the next Graph page is fetched while the current one is stored.

A delta round is an iterator that sends one Graph request per step (graph/_delta.py); the
cycle stores each page in its own unit of work (sync/read.py). Done one after the other, a
first sync of a large tenant waits for Graph and for the store in turn. `read_ahead` runs the
round's iterator on a worker thread that stays at most `depth` pages ahead of the consumer
(plus the page it is fetching), so memory stays bounded:

    with read_ahead(graph.read_users(links)) as pages:
        for page in pages:
            ...store the page...
    round.delta_links  # only now: the worker has finished

Rules it keeps:

* **One thread drives the Graph client during a round.** Only the worker steps the round,
  so the client's private event loop is never run from two threads at once; the consumer
  must not send Graph requests of its own until the block has ended (the cycle sends none
  while it reads: confirmations come after the plan).
* **Failures are the consumer's.** An exception raised while fetching (GraphUnavailable,
  GraphPermissionDenied, Cancelled: whatever the round raises) is raised in the consumer as
  the same exception object, after the pages fetched before it: the consumer sees exactly
  the sequence it would have seen reading the round itself.
* **Stopping is prompt and complete.** When the block ends for any reason (the round's
  end, a store failure, Ctrl-C, the daemon's cancel event making the round raise), the
  worker is told to stop and joined: it starts no request after that point. When the block
  ends with an exception, the round is also *abandoned* (`abandon`, the client's
  `Transport.abandon`): the request in flight and its retry waits are cancelled at once, as
  Ctrl-C did when the round was read on the calling thread. A second Ctrl-C while waiting
  for the worker abandons again and is raised once the worker is gone. No thread outlives
  the block.
* **The round's links are read after the block**, when the worker has been joined (the
  join is the happens-before edge for `delta_links` / `full_streams`).

`depth=0` reads the round on the calling thread, as before read-ahead existed; the bench
(`python -m bench.overlap`) uses it to measure what the overlap gains. It is not a setting.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Generic, TypeVar

P = TypeVar("P")

DEFAULT_DEPTH = 1  # pages waiting for the consumer; the worker fetches one more meanwhile
CANCEL_POLL = 0.1  # seconds between looks at the worker while waiting for it to stop


@dataclass(frozen=True)
class _Failed:
    error: BaseException


class _End:
    pass


_END = _End()


class ReadAhead(Generic[P]):
    """Iterate `pages` on a worker thread, at most `depth` pages ahead. Use as a context
    manager (the worker is started on entry and joined on exit); iterate once."""

    def __init__(self, pages: Iterable[P], depth: int, abandon: Callable[[], None]) -> None:
        self._pages = pages
        self._depth = depth
        self._abandon = abandon
        self._handoff: queue.Queue[P | _Failed | _End] = queue.Queue(maxsize=max(depth, 1))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> ReadAhead[P]:
        if self._depth > 0:
            self._thread = threading.Thread(
                target=self._work, name="entrasync-read-ahead", daemon=True
            )
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(abandon=exc_type is not None)

    def __iter__(self) -> Iterator[P]:
        if self._thread is None:
            if self._depth > 0:
                raise RuntimeError("read_ahead: iterate inside the `with` block")
            yield from self._pages
            return
        while True:
            item = self._handoff.get()
            if isinstance(item, _End):
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item

    def close(self, *, abandon: bool = False) -> None:
        """Tell the worker to stop (and with `abandon`, cancel its request in flight),
        unblock it, and wait for it (idempotent)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        if abandon:
            self._abandon()
        interrupted: BaseException | None = None
        while thread.is_alive():
            self._drain()  # a worker blocked handing over a page can now finish that one put
            try:
                thread.join(CANCEL_POLL)
            except BaseException as exc:  # a second Ctrl-C: raised once the worker is gone
                interrupted = exc
                self._abandon()
        self._drain()  # drop the reference to whatever it handed over last
        if interrupted is not None:
            raise interrupted

    def _drain(self) -> None:
        while True:
            try:
                self._handoff.get_nowait()
            except queue.Empty:
                return

    def _work(self) -> None:
        """The worker: step the round, hand each page over; stop when told to. After the
        stop flag is set it puts at most one more item (the queue was drained, so that put
        cannot block) and sends no further request."""
        try:
            for page in self._pages:  # each step is one Graph request
                self._handoff.put(page)
                if self._stop.is_set():
                    return
            self._handoff.put(_END)
        except BaseException as exc:  # handed to the consumer, raised there
            if not self._stop.is_set():
                self._handoff.put(_Failed(exc))


def read_ahead(
    pages: Iterable[P], depth: int | None = None, abandon: Callable[[], None] = lambda: None
) -> ReadAhead[P]:
    """`pages` (a delta round) read ahead on a worker thread; `abandon` cancels the request
    in flight when the reader gives up; see the module docstring."""
    return ReadAhead(pages, DEFAULT_DEPTH if depth is None else depth, abandon)
