"""Delta rounds, driven by hand with `.with_url(nextLink / deltaLink)` (client.py tells the
protocol): streams, `DeltaRound`, and the readers of `users/delta` and `groups/delta`.

The SDK's PageIterator drops the final `@odata.deltaLink`, so pages are followed here; they
are read as raw JSON and parsed by parse.py (Kiota's model parsing costs ~10 ms per user).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from msgraph.generated.groups.delta.delta_request_builder import (
    DeltaRequestBuilder as GroupsDeltaRequestBuilder,
)
from msgraph.generated.users.delta.delta_request_builder import (
    DeltaRequestBuilder as UsersDeltaRequestBuilder,
)

from entrasync.domain.entra import EntraUser, GroupPage, MembershipChange, UserPage, UserRemoval
from entrasync.errors import GraphUnavailable
from entrasync.graph import parse
from entrasync.graph._errors import (
    GROUP_PERMISSION,
    USER_PERMISSION,
    ResourceNotFound,
    SyncReset,
)
from entrasync.graph._transport import Transport

P = TypeVar("P")

USERS_STREAM = "users"
GROUP_BATCH_PREFIX = "groups:"
CHILD_GROUP_PREFIX = "group:"
MAX_FILTER_IDS = 50
# What users/delta selects is exactly what parse.user_change reads (one list, not two).
USER_SELECT = list(parse.USER_PROPERTIES)
GROUP_SELECT = ["displayName", "members"]

Fetch = Callable[[], Awaitable[dict[str, Any]]]
Follow = Callable[[str], Awaitable[dict[str, Any]]]


def group_batch_stream(group_ids: Iterable[str]) -> str:
    joined = ",".join(sorted(parse.norm_id(g) for g in group_ids))
    return GROUP_BATCH_PREFIX + hashlib.sha1(joined.encode()).hexdigest()  # noqa: S324 - a name


def child_group_stream(group_id: str) -> str:
    return CHILD_GROUP_PREFIX + parse.norm_id(group_id)


def child_group_id(stream: str) -> str | None:
    return stream[len(CHILD_GROUP_PREFIX) :] if stream.startswith(CHILD_GROUP_PREFIX) else None


@dataclass
class RoundState:
    links: dict[str, str] = field(default_factory=dict)
    resynced: set[str] = field(default_factory=set)
    full_streams: set[str] = field(default_factory=set)
    streams: dict[str, tuple[str, ...]] = field(default_factory=dict)
    done: bool = False


class DeltaRound(Generic[P]):
    """Pages of one delta read; iterate once. Afterwards:

    * `delta_links`: the new link per stream read (store them with the mirror changes),
    * `resynced`: streams whose token had expired and were re-read in full,
    * `full_streams`: streams read as a full round (first round or resync),
    * `streams`: for group reads, the group ids each stream covers.
    """

    def __init__(
        self, pages: Iterator[P], state: RoundState, abandon: Callable[[], None] = lambda: None
    ) -> None:
        self._pages = pages
        self._state = state
        self._abandon = abandon

    def __iter__(self) -> Iterator[P]:
        yield from self._pages
        self._state.done = True

    def abandon(self) -> None:
        """The reader gives up on this round (from any thread): the request in flight is
        cancelled and the client sends no other."""
        self._abandon()

    def _finished(self) -> RoundState:
        if not self._state.done:
            raise RuntimeError("the delta round has not been read to the end")
        return self._state

    @property
    def delta_links(self) -> dict[str, str]:
        return dict(self._finished().links)

    @property
    def resynced(self) -> frozenset[str]:
        return frozenset(self._finished().resynced)

    @property
    def full_streams(self) -> frozenset[str]:
        return frozenset(self._finished().full_streams)

    @property
    def streams(self) -> dict[str, tuple[str, ...]]:
        return dict(self._state.streams)


class DeltaReader:
    """Reads the pages of delta streams through the transport, recording links in `state`."""

    def __init__(self, transport: Transport, state: RoundState) -> None:
        self._transport = transport
        self._state = state

    def user_pages(self, link: str | None) -> Iterator[UserPage]:
        builder = self._transport.sdk.users.delta
        query = UsersDeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(select=USER_SELECT)
        initial, follow = self._requests(builder, query)
        for response, first, full, resync in self._drive(
            USERS_STREAM, link, initial, follow, "reading users", USER_PERMISSION
        ):
            users: list[EntraUser] = []
            removals: list[UserRemoval] = []
            for item in response.get("value") or ():
                change = parse.user_change(item)
                if isinstance(change, UserRemoval):
                    removals.append(change)
                else:
                    users.append(change)
            yield UserPage(USERS_STREAM, first, full, resync, tuple(users), tuple(removals))

    def group_pages(
        self, roots: list[str], children: list[str], links: Mapping[str, str], nested: bool
    ) -> Iterator[GroupPage]:
        tracked = set(roots)
        queue: list[tuple[str, tuple[str, ...]]] = []
        for start in range(0, len(roots), MAX_FILTER_IDS):
            batch = tuple(roots[start : start + MAX_FILTER_IDS])
            queue.append((group_batch_stream(batch), batch))
        for child in children:
            if child not in tracked:
                tracked.add(child)
                queue.append((child_group_stream(child), (child,)))
        while queue:
            stream, ids = queue.pop(0)
            self._state.streams[stream] = ids
            for page in self._group_stream(stream, ids, links.get(stream)):
                for change in page.changes if nested else ():
                    child = change.member_id
                    if (
                        change.member_kind == "group"
                        and not change.removed
                        and child not in tracked
                    ):
                        tracked.add(child)  # tracked once: nesting cycles end here
                        queue.append((child_group_stream(child), (child,)))
                yield page

    def _group_stream(
        self, stream: str, ids: tuple[str, ...], link: str | None
    ) -> Iterator[GroupPage]:
        query = GroupsDeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(
            select=GROUP_SELECT,
            filter=" or ".join(f"id eq '{g}'" for g in ids),
        )
        initial, follow = self._requests(self._transport.sdk.groups.delta, query)
        what = f"reading membership of group(s) {', '.join(ids[:3])}" + (
            f" and {len(ids) - 3} more" if len(ids) > 3 else ""
        )
        for response, first, full, resync in self._drive(
            stream, link, initial, follow, what, GROUP_PERMISSION
        ):
            yield group_page(response, stream, ids, first, full, resync)

    def _requests(self, builder: Any, query: Any) -> tuple[Fetch, Follow]:
        """The first request of a full round, and the request following a link."""
        transport = self._transport

        async def initial() -> dict[str, Any]:
            config = transport.delta_config(query)
            return await transport.get_json(builder.to_get_request_information(config))

        async def follow(url: str) -> dict[str, Any]:
            config = transport.delta_config(None)
            request = builder.with_url(url).to_get_request_information(config)
            return await transport.get_json(request)

        return initial, follow

    def _drive(
        self,
        stream: str,
        link: str | None,
        initial: Fetch,
        follow: Follow,
        what: str,
        permission: str,
    ) -> Iterator[tuple[dict[str, Any], bool, bool, bool]]:
        """Yield (response, first, full, resync) per page of one stream; record its link."""
        url, full, resync, first, restarts = link, link is None, False, True, 0
        while True:
            call = functools.partial(follow, url) if url else initial
            try:
                response = self._transport.run(call, what, permission)
            except (SyncReset, ResourceNotFound) as exc:
                # An expired token, or a page whose state refers to a vanished object:
                # start the stream again with a full round, never "no members".
                restarts += 1
                if restarts > 2:
                    reason = (
                        "answering 404 to" if isinstance(exc, ResourceNotFound) else "rejecting"
                    )
                    raise GraphUnavailable(
                        f"{what}: Graph keeps {reason} the sync state of stream {stream}"
                    ) from None
                url, full, resync, first = None, True, True, True
                self._state.resynced.add(stream)
                continue
            yield response, first, full, resync
            first = False
            if response.get("@odata.nextLink"):
                url = str(response["@odata.nextLink"])
                continue
            if not response.get("@odata.deltaLink"):
                raise GraphUnavailable(f"{what}: the round ended without a delta link")
            self._state.links[stream] = str(response["@odata.deltaLink"])
            if full:
                self._state.full_streams.add(stream)
            return


def group_page(
    response: dict[str, Any],
    stream: str,
    ids: tuple[str, ...],
    first: bool,
    full: bool,
    resync: bool,
) -> GroupPage:
    wanted = set(ids)
    changes: list[MembershipChange] = []
    deleted: dict[str, None] = {}
    seen: dict[str, None] = {}
    names: dict[str, str] = {}
    for raw in response.get("value") or ():
        item = parse.group_changes(raw)
        if item.group_id not in wanted:
            continue  # Graph returns only filtered groups; be strict anyway
        if item.removed:
            deleted[item.group_id] = None
        else:
            seen[item.group_id] = None
            if item.name is not None:
                names[item.group_id] = item.name
        changes.extend(item.changes)
    return GroupPage(
        stream=stream,
        first=first,
        full=full,
        resync=resync,
        groups=ids,
        changes=tuple(changes),
        deleted_groups=tuple(deleted),
        seen_groups=tuple(seen),
        names=tuple(names.items()),
    )
