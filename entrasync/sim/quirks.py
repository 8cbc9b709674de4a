"""The real Graph's rough edges, each behind an option of the emulator (all off by default).

Every one is documented behaviour that a delta client has to cope with; the emulator shows
them so that tests can prove entrasync does:

* `partial_users`: an item of an incremental `users/delta` round carries the properties that
  changed and a random subset of the other selected ones. A property that is absent did not
  change; only an explicit `null` clears it. With `Prefer: return=minimal` Graph sends only
  the changed properties, and by default it leaves out properties never set
  (api-reference/v1.0/api/user-delta.md, "Default: return the same properties as initial
  delta request" and "Alternative: return only the changed properties"; delta-query-
  overview.md: "Updated instances are represented by their id with *at least* the
  properties that have been updated").
* `replays`: the probability that an item is sent once more in the same round, on the same
  page or a later one ("It's possible that a single entity will be contained multiple times
  in the response"; "Replays": "Your application must be prepared for replays",
  concepts/delta-query-overview.md).
* `split_members`: a group's `members@delta` is cut into several items over several pages,
  in any order, removals first, the same group showing up again and again ("Paging through
  members in a large group": "Assume that the same group could show up anywhere in the
  nextLink sequence and handle that in your merge logic", concepts/delta-query-groups.md).
* `expiry`: how an expired delta or skip token is refused. `GONE`: 410 with
  `syncStateNotFound` and a `Location` header ("Synchronization reset",
  delta-query-overview.md); `BAD_REQUEST`: 400 with `syncStateNotFound` ("In case of an
  expired token, the service should respond with a 40X-series error with error codes such
  as syncStateNotFound", "Token duration"); `RESYNC_REQUIRED`: 400 with `resyncRequired`;
  `RESYNC_INNER`: 400 `badRequest` whose `innerError` carries `resyncRequired`
  (concepts/errors.md: "apps should loop through all the error codes available" in the
  innererror chain; `resyncRequired`: "The delta token is no longer valid, and the app must
  reset the sync state").
* `vanished_404`: a page asked for with a `$skiptoken` answers 404 `Request_ResourceNotFound`
  when an object of the round vanished between pages: a group of the stream's `$filter` was
  deleted, or a user was deleted while a `users/delta` round was being read. Graph does not
  document this; it has been seen in the field (microsoftgraph/microsoft-graph-docs-contrib
  issue 8166, "Delta API nextLink with $skiptoken return 404"). A fresh round (no token)
  is answered normally: a deleted group of the filter simply has no item.
* `ragged_pages`: each page holds a random number of items up to the requested
  `odata.maxpagesize`, including none at all with a nextLink ("If an @odata.nextLink URL is
  returned, there are additional pages of data to be retrieved in the session. This is true
  even if the current response may contain an empty result"; "$top: The number of objects
  in each page can vary", delta-query-overview.md).

Random choices come from one RNG seeded with `seed`, so a failing test can be replayed.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TypeVar

T = TypeVar("T")


class Expiry(Enum):
    """How the emulator refuses an expired delta or skip token."""

    GONE = "410 syncStateNotFound"
    BAD_REQUEST = "400 syncStateNotFound"
    RESYNC_REQUIRED = "400 resyncRequired"
    RESYNC_INNER = "400 badRequest / innerError resyncRequired"


@dataclass
class Quirks:
    partial_users: bool = False
    replays: float = 0.0
    split_members: bool = False
    expiry: Expiry = Expiry.GONE
    vanished_404: bool = False
    ragged_pages: bool = False
    seed: int | None = None
    _rng: random.Random = field(init=False, repr=False)
    _lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def chance(self, probability: float) -> bool:
        with self._lock:
            return probability > 0 and self._rng.random() < probability

    def size(self, requested: int) -> int:
        """A page size for `ragged_pages`: 0 to `requested`, 0 one time in five."""
        with self._lock:
            return 0 if self._rng.random() < 0.2 else self._rng.randint(1, max(requested, 1))

    def subset(self, items: Sequence[T]) -> list[T]:
        """A random subset (each kept with probability 1/2)."""
        with self._lock:
            return [item for item in items if self._rng.random() < 0.5]
