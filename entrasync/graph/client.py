"""The Graph adapter: a synchronous facade over msgraph-sdk for the reads entrasync needs.

Design decisions (copied into the docs):

* **Synchronous facade, private event loop.** The SDK is async; the rest of entrasync is
  synchronous. `GraphClient` owns one event loop and runs each request to completion on it,
  so callers never see `async`. One client per thread.
* **SDK pipeline without its retry middleware.** The httpx client gets Kiota's default
  middleware minus `RetryHandler` (redirects, URL replacement, headers, telemetry stay),
  plus a counting middleware. tenacity (retry.py) is the one retry policy.
* **TLS trust** from `ca_bundle` is one `ssl.SSLContext` shared by httpx and MSAL's requests
  session (tls.py); the CA is *added* to the system and certifi roots and wins over
  `REQUESTS_CA_BUNDLE`.
* **Delta rounds are driven by hand** with `.with_url(nextLink / deltaLink)`; the SDK's
  PageIterator drops the final `@odata.deltaLink`. The SDK builds each request, runs it
  through its pipeline (auth, middleware) and maps error bodies to `ODataError`, but delta
  pages are read as raw JSON (`send_primitive_async(..., "bytes")`) and parsed by parse.py:
  Kiota's model parsing costs ~10 ms per user, far too slow for a 100k-user round.
* **No database access here.** A read takes the stored delta links (`{stream: link}`) and
  returns a `DeltaRound`: an iterator of pages (`UserPage`/`GroupPage`, plain domain values)
  that fetches one Graph page per step, so a 100k-user first round is never held in memory.
  After the iterator is exhausted, `round.delta_links` holds the new link of every stream
  read. The caller applies pages to the mirror and stores the links *in the same
  transaction*; if anything fails midway it rolls back and the old links replay the changes.
* **Streams.** `users` for users. Watched groups are sorted and cut into batches of 50 (the
  `$filter` limit); a batch's stream is `groups:<sha1 of its ids>`, so it is stable while the
  configured set is. Nested groups each get `group:<id>`: a child discovered in a watched
  group is read in full at once (a first round of its own stream) and then incrementally;
  a child inside a child is followed too, and a group already tracked is never added twice,
  so cycles end. Which children to keep tracking is the caller's decision (it knows the
  mirror): pass `children=`, or leave it None to keep every `group:` stream in `links`.
  `entrasync.domain.entra.reachable_groups` computes the set.
* **Resync.** HTTP 410 or the error codes `syncStateNotFound`, `syncStateInvalid`,
  `resyncRequired` restart that stream with a full round. The restart is visible: its pages
  have `full`, `first` and `resync` set, and `round.resynced` names the stream, so the caller
  diffs against the mirror instead of trusting increments.
* **Group items** select `displayName,members`: pages carry the groups that had an item
  (`seen_groups`: a covered group missing from a whole full round does not exist) and
  their names (`names`). A soft-deleted group comes as `@removed` (reason `changed`), a
  restored one as an item restating every member
  (https://learn.microsoft.com/graph/api/group-delta,
  https://learn.microsoft.com/graph/delta-query-overview).
* **Confirmations before a purge** (`check_member_groups`, `users_exist`) ask Graph
  directly, in JSON batches of 20 sent through the same SDK pipeline and parsed by hand
  (https://learn.microsoft.com/graph/json-batching). Graph throttles sub-requests one by
  one; only those are retried, within the same RetryPolicy bounds, and an answer that
  could not be obtained is None: unknown, never "not a member".
* **Errors** map to the documented exit codes: a refused credential or a 403 →
  `GraphPermissionDenied` (77) naming the permission to grant with admin consent;
  unreachable, TLS failure or retries exhausted → `GraphUnavailable` (69).
* **Failures are classified by the HTTP status**, which the counting middleware records
  for each attempt, not by the exception type: Kiota raises `APIError` for an error body
  it cannot parse only since 1.16 (older versions raise a bare `Exception` for a gateway's
  HTML page, which would skip the retry policy). An answer that is not JSON — a gateway's
  5xx page, a proxy's login page with 200 — is named as such ("… answered 502 with an HTML
  page, not JSON (a proxy or gateway in the way?)"), never shown.
* **A 404 inside a delta round** (the page's state refers to an object deleted between
  pages; seen in the field, microsoft-graph-docs-contrib issue 8166) restarts the stream
  with a full round, exactly as an expired token does (`resynced`): it never means "the
  group is empty". Sync-reset codes are looked for in the error's `innerError` chain too
  (https://learn.microsoft.com/graph/errors: "loop through all the error codes").
* **Cancellation.** `GraphClient(settings, cancel=event)`: when the event is set, the
  request in flight (raced against the event on the client's loop, polled every 50 ms) and
  any retry wait end at once with `Cancelled` (a GraphUnavailable, exit 69). A token
  request already sent to the identity platform is not interrupted (MSAL is synchronous);
  it is bounded by `entra.timeout`, and its retry waits are cancelled.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import contextvars
import functools
import hashlib
import json
import random
import threading
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Generic, TypeVar
from urllib.parse import quote, urlsplit

import httpx
from kiota_abstractions.api_error import APIError
from kiota_abstractions.authentication import BaseBearerTokenAuthenticationProvider
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_abstractions.method import Method
from kiota_abstractions.request_information import RequestInformation
from kiota_http.kiota_client_factory import KiotaClientFactory
from kiota_http.middleware import RetryHandler
from kiota_http.middleware.middleware import BaseMiddleware
from msgraph.generated.groups.delta.delta_request_builder import (
    DeltaRequestBuilder as GroupsDeltaRequestBuilder,
)
from msgraph.generated.groups.item.group_item_request_builder import GroupItemRequestBuilder
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.users.delta.delta_request_builder import (
    DeltaRequestBuilder as UsersDeltaRequestBuilder,
)
from msgraph.graph_request_adapter import GraphRequestAdapter
from msgraph.graph_service_client import GraphServiceClient
from msgraph_core import GraphClientFactory
from msgraph_core.middleware import GraphTelemetryHandler

from entrasync.domain.entra import (
    EntraUser,
    GroupInfo,
    GroupPage,
    MembershipChange,
    UserPage,
    UserRemoval,
)
from entrasync.errors import (
    ConfigError,
    EntrasyncError,
    GraphPermissionDenied,
    GraphUnavailable,
)
from entrasync.graph import parse
from entrasync.graph.auth import (
    BodyKind,
    MsalAccessTokenProvider,
    MsalCaches,
    TokenSource,
    answered,
    body_kind,
    tls_hint,
)
from entrasync.graph.retry import (
    BACKOFF_STATUSES,
    RETRY_AFTER_STATUSES,
    Cancelled,
    RequestCounters,
    Transient,
    cancellable_sleep,
    header,
    parse_retry_after,
    retry_async,
)
from entrasync.graph.settings import GraphSettings, RetryPolicy
from entrasync.graph.tls import trust_context

T = TypeVar("T")
P = TypeVar("P")
K = TypeVar("K", bound=Hashable)

USERS_STREAM = "users"
GROUP_BATCH_PREFIX = "groups:"
CHILD_GROUP_PREFIX = "group:"
MAX_FILTER_IDS = 50
MAX_BATCH = 20  # requests per JSON batch
MAX_CHECK_GROUPS = 20  # group ids per checkMemberGroups call
# Sub-responses worth sending again: the statuses the single-request policy retries.
RETRY_SUB_STATUSES = RETRY_AFTER_STATUSES | BACKOFF_STATUSES
USER_SELECT = [
    "userPrincipalName",
    "mail",
    "proxyAddresses",
    "onPremisesUserPrincipalName",
    "onPremisesSamAccountName",
    "onPremisesDomainName",
    "employeeId",
    "displayName",
]
GROUP_SELECT = ["displayName", "members"]
SYNC_RESET_CODES = frozenset(
    {"syncstatenotfound", "syncstateinvalid", "resyncrequired", "resyncrequiredexception"}
)
GROUP_PERMISSION = "GroupMember.Read.All"
USER_PERMISSION = "User.Read.All"
CANCEL_POLL = 0.05  # seconds between looks at the cancel event while a request runs


def group_batch_stream(group_ids: Iterable[str]) -> str:
    joined = ",".join(sorted(parse.norm_id(g) for g in group_ids))
    return GROUP_BATCH_PREFIX + hashlib.sha1(joined.encode()).hexdigest()  # noqa: S324 - a name


def child_group_stream(group_id: str) -> str:
    return CHILD_GROUP_PREFIX + parse.norm_id(group_id)


def child_group_id(stream: str) -> str | None:
    return stream[len(CHILD_GROUP_PREFIX) :] if stream.startswith(CHILD_GROUP_PREFIX) else None


@dataclass(frozen=True)
class _SubRequest:
    """One request of a JSON batch; `url` is relative to the version (`/users/…`)."""

    method: str
    url: str
    body: dict[str, Any] | None = None

    def to_json(self, request_id: str) -> dict[str, Any]:
        out: dict[str, Any] = {"id": request_id, "method": self.method, "url": self.url}
        if self.body is not None:  # Graph wants Content-Type whenever there is a body
            out["body"] = self.body
            out["headers"] = {"Content-Type": "application/json"}
        return out


@dataclass(frozen=True)
class _SubResponse:
    status: int
    headers: dict[str, str]
    body: Any


class _SyncReset(Exception):
    """Graph no longer knows this delta/skip token: restart the stream."""


class _NotFound(Exception):
    pass


class _NotJson(Exception):
    """A 2xx answer whose body is not JSON (a proxy's login page)."""

    def __init__(self, status: int, kind: BodyKind) -> None:
        super().__init__(kind.value)
        self.status = status
        self.kind = kind


@dataclass
class _Exchange:
    """The last HTTP answer of one attempt, as the counting middleware saw it."""

    status: int | None = None
    headers: httpx.Headers | None = None
    content_type: str = ""


_EXCHANGE: contextvars.ContextVar[_Exchange | None] = contextvars.ContextVar(
    "entrasync_graph_exchange", default=None
)


@dataclass(frozen=True)
class _Failure:
    """A failed Graph answer, whatever exception the SDK raised for it."""

    status: int
    headers: Any = None
    codes: tuple[str, ...] = ()  # the OData error code, then the innerError chain's
    message: str = ""
    kind: BodyKind = BodyKind.JSON

    @property
    def code(self) -> str:
        return self.codes[0] if self.codes else ""


@dataclass
class _RoundState:
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

    def __init__(self, pages: Iterator[P], state: _RoundState) -> None:
        self._pages = pages
        self._state = state

    def __iter__(self) -> Iterator[P]:
        yield from self._pages
        self._state.done = True

    def _finished(self) -> _RoundState:
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


class _CountingMiddleware(BaseMiddleware):
    """Last in the pipeline: counts every HTTP attempt by status."""

    def __init__(self, counters: RequestCounters) -> None:
        super().__init__()
        self._counters = counters

    async def send(
        self, request: httpx.Request, transport: httpx.AsyncBaseTransport
    ) -> httpx.Response:
        try:
            response: httpx.Response = await super().send(request, transport)
        except Exception:
            self._counters.add("graph", "error")
            raise
        self._counters.add("graph", str(response.status_code))
        exchange = _EXCHANGE.get()
        if exchange is not None:
            exchange.status = response.status_code
            exchange.headers = response.headers
            exchange.content_type = response.headers.get("Content-Type", "")
        return response


def _middleware(counters: RequestCounters) -> list[Any]:
    chain = [
        m
        for m in KiotaClientFactory.get_default_middleware(None)
        if not isinstance(m, RetryHandler)
    ]
    return [*chain, GraphTelemetryHandler(), _CountingMiddleware(counters)]


class GraphClient:
    """Reads Entra through Graph. Use as a context manager or call `close()`."""

    def __init__(
        self,
        settings: GraphSettings,
        caches: MsalCaches | None = None,
        *,
        cancel: threading.Event | None = None,
    ) -> None:
        self.settings = settings
        self.counters = RequestCounters()
        self._cancel = cancel
        self._host = urlsplit(settings.graph_url).netloc
        context = trust_context(settings.ca_bundle) if settings.ca_bundle else None
        self._tokens = TokenSource(settings, self.counters, context, caches, cancel)
        self._loop = asyncio.new_event_loop()
        http = httpx.AsyncClient(
            base_url=settings.graph_base,
            verify=context if context is not None else True,
            timeout=httpx.Timeout(settings.timeout),
        )
        self._http = GraphClientFactory.create_with_custom_middleware(
            _middleware(self.counters), client=http
        )
        host = urlsplit(settings.graph_url).hostname or ""
        auth = BaseBearerTokenAuthenticationProvider(MsalAccessTokenProvider(self._tokens, host))
        adapter = GraphRequestAdapter(auth, client=self._http)
        adapter.base_url = settings.graph_base
        self._sdk: Any = GraphServiceClient(request_adapter=adapter)

    # -- lifecycle --------------------------------------------------------------------------

    def close(self) -> None:
        if not self._loop.is_closed():
            self._loop.run_until_complete(self._http.aclose())
            self._loop.close()
        self._tokens.close()

    def __enter__(self) -> GraphClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- public reads -----------------------------------------------------------------------

    def check_token(self) -> None:
        """Get an access token now (raises GraphPermissionDenied / GraphUnavailable)."""
        self._tokens.token()

    def check_user_read(self) -> None:
        """Read one user (`GET users?$top=1`): proves the User.Read.All grant cheaply."""
        builder = self._sdk.users

        async def read() -> dict[str, Any]:
            query = builder.UsersRequestBuilderGetQueryParameters(select=["id"], top=1)
            config = RequestConfiguration(query_parameters=query)
            return await self._get_json(builder.to_get_request_information(config))

        try:
            self._run(read, "reading users", USER_PERMISSION)
        except (_NotFound, _SyncReset):  # the internal signals never leave the client
            raise ConfigError(
                f"entra.graph_url: {self.settings.graph_base}/users answered 404 or 410: "
                "is this Microsoft Graph?"
            ) from None

    def get_group(self, group_id: str) -> GroupInfo | None:
        """A group's name and direct member count; None when the group does not exist."""
        item = self._sdk.groups.by_group_id(group_id)

        async def read() -> GroupInfo:
            query = GroupItemRequestBuilder.GroupItemRequestBuilderGetQueryParameters(
                select=["id", "displayName"]
            )
            group = await item.get(
                request_configuration=RequestConfiguration(query_parameters=query)
            )
            config: RequestConfiguration[Any] = RequestConfiguration()
            config.headers.add("ConsistencyLevel", "eventual")
            count = await item.members.count.get(request_configuration=config)
            return GroupInfo(
                id=parse.norm_id(group.id or group_id),
                display_name=group.display_name,
                member_count=None if count is None else int(count),
            )

        try:
            return self._run(read, f"reading group {group_id}", GROUP_PERMISSION)
        except _NotFound:
            return None

    def read_users(self, links: Mapping[str, str]) -> DeltaRound[UserPage]:
        """One `users/delta` round; `links` may hold a `users` link from the last round."""
        state = _RoundState()
        return DeltaRound(self._user_pages(links.get(USERS_STREAM), state), state)

    def read_groups(
        self,
        group_ids: Iterable[str],
        links: Mapping[str, str],
        *,
        nested: bool = True,
        children: Iterable[str] | None = None,
    ) -> DeltaRound[GroupPage]:
        """One `groups/delta` round over the watched groups (and nested groups if `nested`).

        `links` may be the caller's whole link table: only group streams are used."""
        roots = sorted({parse.norm_id(g) for g in group_ids})
        if children is None:
            known = [g for s in links if (g := child_group_id(s)) is not None]
        else:
            known = [parse.norm_id(g) for g in children]
        state = _RoundState()
        pages = self._group_pages(roots, known if nested else [], links, nested, state)
        return DeltaRound(pages, state)

    def check_member_groups(
        self, user_ids: Sequence[str], group_ids: Sequence[str]
    ) -> dict[str, frozenset[str] | None]:
        """Per user (id normalised), the subset of `group_ids` (normalised) the user is a
        direct or transitive member of, asked of Graph right now: `POST /users/{id}/
        checkMemberGroups` (https://learn.microsoft.com/graph/api/user-checkmembergroups),
        at most 20 groups per call (more are split), sent in JSON batches of 20.

        A user Graph does not know (404: deleted) is in no group: `frozenset()`. None means
        the answer could not be obtained (throttled until the retry bounds ran out, or an
        unexpected answer); the caller must not act on it. A 403 raises
        GraphPermissionDenied (User.Read.All and GroupMember.Read.All are needed)."""
        users = list(dict.fromkeys(parse.norm_id(u) for u in user_ids))
        groups = sorted({parse.norm_id(g) for g in group_ids})
        if not groups:
            return {user: frozenset() for user in users}
        chunks = [groups[i : i + MAX_CHECK_GROUPS] for i in range(0, len(groups), MAX_CHECK_GROUPS)]
        requests = {
            (user, n): _SubRequest(
                "POST", f"/users/{quote(user, safe='@')}/checkMemberGroups", {"groupIds": chunk}
            )
            for user in users
            for n, chunk in enumerate(chunks)
        }
        what = f"checking group membership of {len(users)} user(s)"
        answers = self._batched(requests, what, f"{USER_PERMISSION} and {GROUP_PERMISSION}")
        wanted = frozenset(groups)
        return {
            user: _member_groups([answers[(user, n)] for n in range(len(chunks))], wanted)
            for user in users
        }

    def users_exist(self, user_ids: Sequence[str]) -> dict[str, bool | None]:
        """Per user (id normalised): does Graph still know it? `GET /users/{id}?$select=id`
        (https://learn.microsoft.com/graph/api/user-get) in JSON batches of 20: 200 → True,
        404 → False (deleted, soft-deleted included), None → unknown (do not act on it)."""
        users = list(dict.fromkeys(parse.norm_id(u) for u in user_ids))
        requests = {
            user: _SubRequest("GET", f"/users/{quote(user, safe='@')}?$select=id") for user in users
        }
        answers = self._batched(
            requests, f"checking that {len(users)} user(s) exist", USER_PERMISSION
        )
        return {user: _exists(answers[user]) for user in users}

    # -- delta driving ----------------------------------------------------------------------

    def _user_pages(self, link: str | None, state: _RoundState) -> Iterator[UserPage]:
        builder = self._sdk.users.delta

        async def initial() -> dict[str, Any]:
            query = UsersDeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(
                select=USER_SELECT
            )
            config = self._delta_config(query)
            return await self._get_json(builder.to_get_request_information(config))

        async def follow(url: str) -> dict[str, Any]:
            config = self._delta_config(None)
            return await self._get_json(builder.with_url(url).to_get_request_information(config))

        for response, first, full, resync in self._drive(
            USERS_STREAM, link, initial, follow, "reading users", USER_PERMISSION, state
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

    def _group_pages(
        self,
        roots: list[str],
        children: list[str],
        links: Mapping[str, str],
        nested: bool,
        state: _RoundState,
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
            state.streams[stream] = ids
            for page in self._group_stream(stream, ids, links.get(stream), state):
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
        self, stream: str, ids: tuple[str, ...], link: str | None, state: _RoundState
    ) -> Iterator[GroupPage]:
        builder = self._sdk.groups.delta

        async def initial() -> dict[str, Any]:
            query = GroupsDeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(
                select=GROUP_SELECT,
                filter=" or ".join(f"id eq '{g}'" for g in ids),
            )
            config = self._delta_config(query)
            return await self._get_json(builder.to_get_request_information(config))

        async def follow(url: str) -> dict[str, Any]:
            config = self._delta_config(None)
            return await self._get_json(builder.with_url(url).to_get_request_information(config))

        what = f"reading membership of group(s) {', '.join(ids[:3])}" + (
            f" and {len(ids) - 3} more" if len(ids) > 3 else ""
        )
        for response, first, full, resync in self._drive(
            stream, link, initial, follow, what, GROUP_PERMISSION, state
        ):
            yield _group_page(response, stream, ids, first, full, resync)

    def _drive(
        self,
        stream: str,
        link: str | None,
        initial: Callable[[], Awaitable[dict[str, Any]]],
        follow: Callable[[str], Awaitable[dict[str, Any]]],
        what: str,
        permission: str,
        state: _RoundState,
    ) -> Iterator[tuple[dict[str, Any], bool, bool, bool]]:
        """Yield (response, first, full, resync) per page of one stream; record its link."""
        url, full, resync, first, restarts = link, link is None, False, True, 0
        while True:
            call = functools.partial(follow, url) if url else initial
            try:
                response = self._run(call, what, permission)
            except (_SyncReset, _NotFound) as exc:
                # An expired token, or a page whose state refers to a vanished object:
                # start the stream again with a full round, never "no members".
                restarts += 1
                if restarts > 2:
                    reason = "answering 404 to" if isinstance(exc, _NotFound) else "rejecting"
                    raise GraphUnavailable(
                        f"{what}: Graph keeps {reason} the sync state of stream {stream}"
                    ) from None
                url, full, resync, first = None, True, True, True
                state.resynced.add(stream)
                continue
            yield response, first, full, resync
            first = False
            if response.get("@odata.nextLink"):
                url = str(response["@odata.nextLink"])
                continue
            if not response.get("@odata.deltaLink"):
                raise GraphUnavailable(f"{what}: the round ended without a delta link")
            state.links[stream] = str(response["@odata.deltaLink"])
            if full:
                state.full_streams.add(stream)
            return

    # -- JSON batching -----------------------------------------------------------------------

    def _batched(
        self, requests: Mapping[K, _SubRequest], what: str, permission: str
    ) -> dict[K, _SubResponse | None]:
        """Send `requests` in JSON batches of 20 (https://learn.microsoft.com/graph/json-batching)
        and return each one's final sub-response; None when it could not be obtained.

        Graph throttles the requests of a batch individually, each 429 carrying its own
        Retry-After (https://learn.microsoft.com/graph/throttling#throttling-and-batching):
        only those sub-requests are sent again, in a new batch, after the largest Retry-After
        among them (the policy's backoff when none is given), within the client's
        RetryPolicy (attempts and total time). Each whole-batch POST is retried as any
        request is."""
        policy = self.settings.retry
        results: dict[K, _SubResponse | None] = dict.fromkeys(requests)
        pending, started, attempt = list(requests), time.monotonic(), 1
        while True:
            retry, hints = self._batch_round(pending, requests, results, what, permission)
            wait = _sub_wait(policy, hints, attempt)
            if (
                not retry
                or attempt >= policy.max_attempts
                or time.monotonic() - started + wait > policy.max_total
            ):
                return results  # whatever is still pending stays unknown (None)
            cancellable_sleep(self._cancel, what)(wait)
            pending, attempt = retry, attempt + 1

    def _batch_round(
        self,
        pending: list[K],
        requests: Mapping[K, _SubRequest],
        results: dict[K, _SubResponse | None],
        what: str,
        permission: str,
    ) -> tuple[list[K], list[float]]:
        """Send `pending` once, in batches of 20; record final answers in `results`. Returns
        the keys to send again and the Retry-After hints that came with them."""
        retry: list[K] = []
        hints: list[float] = []
        for start in range(0, len(pending), MAX_BATCH):
            keys = pending[start : start + MAX_BATCH]
            answers = self._send_batch([(k, requests[k]) for k in keys], what, permission)
            for key in keys:
                answer = answers.get(key)  # a missing answer is retried like a 503
                if answer is None or answer.status in RETRY_SUB_STATUSES:
                    retry.append(key)
                    hint = _retry_after(answer)
                    if hint is not None:
                        hints.append(hint)
                elif answer.status == 403:
                    raise self._denied(what, _error_code(answer.body), permission)
                else:
                    results[key] = answer
        return retry, hints

    def _send_batch(
        self, items: list[tuple[K, _SubRequest]], what: str, permission: str
    ) -> dict[K, _SubResponse]:
        """One `POST /$batch` through the SDK pipeline; sub-responses matched by id (they
        come back in any order). Parsed by hand: the SDK's batch models may drop a JSON
        sub-response body."""
        keys = {str(n): key for n, (key, _) in enumerate(items, 1)}
        payload = {"requests": [req.to_json(str(n)) for n, (_, req) in enumerate(items, 1)]}
        content = json.dumps(payload).encode()

        async def send() -> dict[str, Any]:
            info = RequestInformation(Method.POST)
            info.url = f"{self.settings.graph_base}/$batch"
            info.headers.try_add("Accept", "application/json")
            info.set_stream_content(content, "application/json")
            return await self._get_json(info)

        try:
            data = self._run(send, what, permission)
        except (_NotFound, _SyncReset):
            raise EntrasyncError(f"{what}: Graph refused the JSON batch itself") from None
        answers: dict[K, _SubResponse] = {}
        for raw in data.get("responses") or ():
            parsed = _parse_sub_response(raw)
            if parsed is not None and parsed[0] in keys:
                answers[keys[parsed[0]]] = parsed[1]
        return answers

    # -- one request, with retries and error mapping -----------------------------------------

    def _delta_config(self, query: Any) -> RequestConfiguration[Any]:
        """Delta requests take the page size as `Prefer: odata.maxpagesize` ($top is not
        supported on delta queries); Graph caps it (200 objects, 500 links per page)."""
        config: RequestConfiguration[Any] = RequestConfiguration(query_parameters=query)
        if self.settings.page_size:
            config.headers.add("Prefer", f"odata.maxpagesize={self.settings.page_size}")
        return config

    async def _get_json(self, request: Any) -> dict[str, Any]:
        """Send a request built by the SDK; return the JSON body as plain data."""
        body = await self._sdk.request_adapter.send_primitive_async(
            request, "bytes", {"XXX": ODataError}
        )
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            exchange = _EXCHANGE.get()
            status = exchange.status if exchange and exchange.status else 200
            content_type = exchange.content_type if exchange else ""
            raise _NotJson(status, body_kind(content_type, body or b"")) from None
        if not isinstance(data, dict):
            raise EntrasyncError("Graph answered with JSON that is not an object")
        return data

    def _run(self, call: Callable[[], Awaitable[T]], what: str, permission: str) -> T:
        if self._cancel is not None and self._cancel.is_set():
            raise Cancelled(f"{what}: cancelled")
        work = self._with_retries(call, what, permission)
        return self._loop.run_until_complete(self._cancellable(work, what))

    async def _cancellable(self, work: Awaitable[T], what: str) -> T:
        """Run `work` (a request with its retries) until done or until the cancel event is
        set; then cancel it (the connection is dropped, a retry wait ends) and raise."""
        if self._cancel is None:
            return await work
        task = asyncio.ensure_future(work)
        while not task.done():
            await asyncio.wait({task}, timeout=CANCEL_POLL)
            if not task.done() and self._cancel.is_set():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
                raise Cancelled(f"{what}: cancelled")
        return task.result()

    async def _with_retries(
        self, call: Callable[[], Awaitable[T]], what: str, permission: str
    ) -> T:
        unauthorized = 0

        async def attempt() -> T:
            nonlocal unauthorized
            exchange = _Exchange()
            token = _EXCHANGE.set(exchange)
            try:
                return await call()
            except (EntrasyncError, _SyncReset, _NotFound, Transient):
                raise
            except _NotJson as exc:
                page = _Failure(exc.status, exchange.headers, kind=exc.kind)
                raise self._classify(page, what, permission) from None
            except httpx.TimeoutException:
                raise Transient(f"{what}: timed out after {self.settings.timeout:g}s") from None
            except httpx.TransportError as exc:
                if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                    raise GraphUnavailable(
                        f"cannot reach {self.settings.graph_url}: {tls_hint(self.settings)}"
                    ) from None
                raise Transient(
                    f"{what}: cannot reach {self.settings.graph_url} ({type(exc).__name__})"
                ) from None
            except Exception as exc:  # APIError, or whatever an older Kiota raises
                failure = _failure(exc, exchange)
                if failure is None:
                    raise
                if failure.status == 401 and unauthorized == 0:
                    unauthorized += 1
                    self._tokens.drop_cached_tokens()  # revoked or expired early: fetch anew
                    raise Transient(
                        f"{what}: Graph rejected the access token", status=401
                    ) from None
                raise self._classify(failure, what, permission) from None
            finally:
                _EXCHANGE.reset(token)

        policy = self.settings.retry
        try:
            return await retry_async(policy, attempt)
        except Transient as exc:
            raise GraphUnavailable(
                f"{exc.reason}; gave up (at most {policy.max_attempts} attempts within "
                f"{policy.max_total:g}s)"
            ) from None

    def _denied(self, what: str, code: str, permission: str) -> GraphPermissionDenied:
        noun = "permissions" if " and " in permission else "permission"
        return GraphPermissionDenied(
            f"{what}: Graph denied access ({code or 403}). The app registration "
            f"{self.settings.client_id} needs the Microsoft Graph application {noun} "
            f"{permission}, and an administrator must grant admin consent for it in "
            f"tenant {self.settings.tenant_id}"
        )

    def _classify(self, failure: _Failure, what: str, permission: str) -> Exception:
        status, code = failure.status, failure.code
        subject = "Graph" if failure.kind is BodyKind.JSON else self._host
        said = f"{what}: {answered(subject, status, failure.kind)}"
        if status == 410 or any(c.lower() in SYNC_RESET_CODES for c in failure.codes):
            return _SyncReset()
        if status in RETRY_AFTER_STATUSES:
            retry_after = parse_retry_after(header(failure.headers, "Retry-After"))
            return Transient(said, retry_after, status)
        if status in BACKOFF_STATUSES:
            return Transient(said, None, status)
        if failure.kind is not BodyKind.JSON:
            return GraphUnavailable(said)
        if status == 403:
            return self._denied(what, code, permission)
        if status == 401:
            return GraphPermissionDenied(
                f"{what}: Graph rejected the access token twice ({code or 401}: {failure.message})"
            )
        if status == 404:
            return _NotFound()
        return EntrasyncError(f"{what}: Graph answered {status} {code}: {failure.message}")


def _failure(exc: Exception, exchange: _Exchange) -> _Failure | None:
    """What a failed request answered: from Kiota's APIError (status, OData error), else
    from the status the middleware recorded (older Kiota raises a bare Exception for an
    error body it cannot parse). None when no answer was received: not an HTTP failure."""
    status = getattr(exc, "response_status_code", None) if isinstance(exc, APIError) else None
    status = status or exchange.status
    if not status or status < 400:
        return None
    headers = getattr(exc, "response_headers", None) or exchange.headers
    error = getattr(exc, "error", None)  # the parsed OData error, when the body was JSON
    message = str(getattr(error, "message", "") or getattr(exc, "message", "") or "")
    return _Failure(
        status=status,
        headers=headers,
        codes=_error_codes(error),
        message=message,
        kind=BodyKind.JSON if error is not None else _kind_of(exchange.content_type),
    )


def _kind_of(content_type: str) -> BodyKind:
    """An unparsed error body by its content type; none at all is classified by status."""
    lowered = content_type.lower()
    if "html" in lowered:
        return BodyKind.HTML
    return BodyKind.OTHER if lowered and "json" not in lowered else BodyKind.JSON


def _error_codes(error: Any) -> tuple[str, ...]:
    """The OData error's code and those of its innerError chain (each a dict in Kiota's
    `additional_data`, or the model's own attributes)."""
    codes: list[str] = []
    if error is None:
        return ()
    if getattr(error, "code", None):
        codes.append(str(error.code))
    inner: Any = getattr(error, "inner_error", None)
    for _ in range(8):  # a chain, not a tree; bounded against a hostile body
        data = inner if isinstance(inner, dict) else getattr(inner, "additional_data", None)
        if not isinstance(data, dict):
            break
        if data.get("code"):
            codes.append(str(data["code"]))
        inner = data.get("innerError") or data.get("innererror")
    return tuple(codes)


def _group_page(
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


# -- JSON batch helpers ---------------------------------------------------------------------


def _parse_sub_response(raw: Any) -> tuple[str, _SubResponse] | None:
    if not isinstance(raw, dict) or raw.get("id") is None:
        return None
    status = raw.get("status")
    if not isinstance(status, int):
        return None
    headers = raw.get("headers")
    names = {str(k): str(v) for k, v in headers.items()} if isinstance(headers, dict) else {}
    body = raw.get("body")
    if isinstance(body, str):  # non-JSON content types come base64 encoded
        with contextlib.suppress(binascii.Error, ValueError):
            body = json.loads(base64.b64decode(body, validate=True))
    return str(raw["id"]), _SubResponse(status, names, body)


def _retry_after(answer: _SubResponse | None) -> float | None:
    return None if answer is None else parse_retry_after(header(answer.headers, "Retry-After"))


def _sub_wait(policy: RetryPolicy, hints: list[float], attempt: int) -> float:
    """The largest Retry-After (capped), else exponential backoff with full jitter, as
    retry.py waits for a single request."""
    if hints:
        return min(max(hints), policy.max_retry_after)
    high = min(policy.backoff_max, policy.backoff_base * 2 ** (attempt - 1))
    return random.uniform(0, high)  # jitter, not cryptography


def _error_code(body: Any) -> str:
    error = body.get("error") if isinstance(body, dict) else None
    return str(error.get("code") or "") if isinstance(error, dict) else ""


def _member_groups(
    answers: list[_SubResponse | None], wanted: frozenset[str]
) -> frozenset[str] | None:
    """One user's checkMemberGroups answers (one per chunk of groups) combined."""
    if any(a is not None and a.status == 404 for a in answers):
        return frozenset()  # the user no longer exists: a member of nothing
    found: set[str] = set()
    for answer in answers:
        value = answer.body.get("value") if answer and isinstance(answer.body, dict) else None
        if answer is None or answer.status != 200 or not isinstance(value, list):
            return None
        found.update(parse.norm_id(g) for g in value)
    return frozenset(found & wanted)


def _exists(answer: _SubResponse | None) -> bool | None:
    if answer is None:
        return None
    return {200: True, 404: False}.get(answer.status)
