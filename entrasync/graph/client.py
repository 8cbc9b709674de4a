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
* **Layout.** This module is the public surface; behind it, `_transport.py` is the one send
  path (loop, SDK pipeline, retries, cancellation), `_errors.py` classifies failures,
  `_delta.py` drives delta rounds and `_batch.py` sends JSON batches.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph.generated.groups.item.group_item_request_builder import GroupItemRequestBuilder

from entrasync.domain.entra import EntraUser, GroupInfo, GroupPage, UserPage
from entrasync.errors import ConfigError
from entrasync.graph import _batch, _user, parse
from entrasync.graph._delta import (
    USERS_STREAM,
    DeltaReader,
    DeltaRound,
    RoundState,
    child_group_id,
)
from entrasync.graph._errors import (
    GROUP_PERMISSION,
    SIGNALS,
    USER_PERMISSION,
    ResourceNotFound,
)
from entrasync.graph._transport import Transport
from entrasync.graph.auth import MsalCaches
from entrasync.graph.retry import RequestCounters
from entrasync.graph.settings import GraphSettings

__all__ = ["DeltaRound", "GraphClient"]  # DeltaRound: `entrasync.graph.client` kept it


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
        self._transport = Transport(settings, self.counters, caches, cancel)

    # -- lifecycle --------------------------------------------------------------------------

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> GraphClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- public reads -----------------------------------------------------------------------

    def check_token(self) -> None:
        """Get an access token now (raises GraphPermissionDenied / GraphUnavailable)."""
        self._transport.tokens.token()

    def check_user_read(self) -> None:
        """Read one user (`GET users?$top=1`): proves the User.Read.All grant cheaply."""
        transport = self._transport
        builder = transport.sdk.users

        async def read() -> dict[str, Any]:
            query = builder.UsersRequestBuilderGetQueryParameters(select=["id"], top=1)
            config = RequestConfiguration(query_parameters=query)
            return await transport.get_json(builder.to_get_request_information(config))

        try:
            transport.run(read, "reading users", USER_PERMISSION)
        except SIGNALS:  # the internal signals never leave the client
            raise ConfigError(
                f"entra.graph_url: {self.settings.graph_base}/users answered 404 or 410: "
                "is this Microsoft Graph?"
            ) from None

    def get_group(self, group_id: str) -> GroupInfo | None:
        """A group's name and direct member count; None when the group does not exist."""
        item = self._transport.sdk.groups.by_group_id(group_id)

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
            return self._transport.run(read, f"reading group {group_id}", GROUP_PERMISSION)
        except ResourceNotFound:
            return None

    def get_user(self, key: str) -> EntraUser | None:
        """One user by object id or UPN, read now: `GET /users/{id | userPrincipalName}` with
        the `users/delta` properties selected (https://learn.microsoft.com/graph/api/user-get),
        parsed as a delta item is. None when Graph answers 404 (no such user, or deleted)."""
        return _user.get_user(self._transport, key)

    def read_users(self, links: Mapping[str, str]) -> DeltaRound[UserPage]:
        """One `users/delta` round; `links` may hold a `users` link from the last round."""
        state = RoundState()
        pages = DeltaReader(self._transport, state).user_pages(links.get(USERS_STREAM))
        return DeltaRound(pages, state, self._transport.abandon)

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
        state = RoundState()
        reader = DeltaReader(self._transport, state)
        pages = reader.group_pages(roots, known if nested else [], links, nested)
        return DeltaRound(pages, state, self._transport.abandon)

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
        return _batch.member_groups(self._transport, user_ids, group_ids)

    def users_exist(self, user_ids: Sequence[str]) -> dict[str, bool | None]:
        """Per user (id normalised): does Graph still know it? `GET /users/{id}?$select=id`
        (https://learn.microsoft.com/graph/api/user-get) in JSON batches of 20: 200 → True,
        404 → False (deleted, soft-deleted included), None → unknown (do not act on it)."""
        return _batch.users_exist(self._transport, user_ids)
