"""JSON batches (https://learn.microsoft.com/graph/json-batching) for the confirmations asked
right before a purge: `checkMemberGroups` and "does the user still exist".

Batches of 20 go through the same SDK pipeline as any request and are parsed by hand (the
SDK's batch models may drop a JSON sub-response body). Graph throttles sub-requests one by
one; only those are retried, within the same RetryPolicy bounds, and an answer that could
not be obtained is None: unknown, never "not a member".
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import random
import time
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

from kiota_abstractions.method import Method
from kiota_abstractions.request_information import RequestInformation

from entrasync.errors import EntrasyncError
from entrasync.graph import parse
from entrasync.graph._errors import (
    GROUP_PERMISSION,
    SIGNALS,
    USER_PERMISSION,
    denied,
    error_code,
)
from entrasync.graph._transport import Transport
from entrasync.graph.retry import (
    BACKOFF_STATUSES,
    RETRY_AFTER_STATUSES,
    cancellable_sleep,
    header,
    parse_retry_after,
)
from entrasync.graph.settings import RetryPolicy

K = TypeVar("K", bound=Hashable)

MAX_BATCH = 20  # requests per JSON batch
MAX_CHECK_GROUPS = 20  # group ids per checkMemberGroups call
# Sub-responses worth sending again: the statuses the single-request policy retries.
RETRY_SUB_STATUSES = RETRY_AFTER_STATUSES | BACKOFF_STATUSES


@dataclass(frozen=True)
class SubRequest:
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
class SubResponse:
    status: int
    headers: dict[str, str]
    body: Any


def member_groups(
    transport: Transport, user_ids: Sequence[str], group_ids: Sequence[str]
) -> dict[str, frozenset[str] | None]:
    """`GraphClient.check_member_groups`: chunks of 20 groups per user, in batches."""
    users = list(dict.fromkeys(parse.norm_id(u) for u in user_ids))
    groups = sorted({parse.norm_id(g) for g in group_ids})
    if not groups:
        return {user: frozenset() for user in users}
    chunks = [groups[i : i + MAX_CHECK_GROUPS] for i in range(0, len(groups), MAX_CHECK_GROUPS)]
    requests = {
        (user, n): SubRequest(
            "POST", f"/users/{quote(user, safe='@')}/checkMemberGroups", {"groupIds": chunk}
        )
        for user in users
        for n, chunk in enumerate(chunks)
    }
    what = f"checking group membership of {len(users)} user(s)"
    batcher = Batcher(transport, what, f"{USER_PERMISSION} and {GROUP_PERMISSION}")
    answers = batcher.send(requests)
    wanted = frozenset(groups)
    return {
        user: _combined([answers[(user, n)] for n in range(len(chunks))], wanted) for user in users
    }


def users_exist(transport: Transport, user_ids: Sequence[str]) -> dict[str, bool | None]:
    """`GraphClient.users_exist`: `GET /users/{id}?$select=id` per user, in batches."""
    users = list(dict.fromkeys(parse.norm_id(u) for u in user_ids))
    requests = {
        user: SubRequest("GET", f"/users/{quote(user, safe='@')}?$select=id") for user in users
    }
    batcher = Batcher(transport, f"checking that {len(users)} user(s) exist", USER_PERMISSION)
    answers = batcher.send(requests)
    return {user: _exists(answers[user]) for user in users}


class Batcher:
    """Sends sub-requests in JSON batches for one purpose (`what`, needing `permission`)."""

    def __init__(self, transport: Transport, what: str, permission: str) -> None:
        self._transport = transport
        self._what = what
        self._permission = permission

    def send(self, requests: Mapping[K, SubRequest]) -> dict[K, SubResponse | None]:
        """Send `requests` in JSON batches of 20 (https://learn.microsoft.com/graph/json-batching)
        and return each one's final sub-response; None when it could not be obtained.

        Graph throttles the requests of a batch individually, each 429 carrying its own
        Retry-After (https://learn.microsoft.com/graph/throttling#throttling-and-batching):
        only those sub-requests are sent again, in a new batch, after the largest Retry-After
        among them (the policy's backoff when none is given), within the client's
        RetryPolicy (attempts and total time). Each whole-batch POST is retried as any
        request is."""
        policy = self._transport.settings.retry
        results: dict[K, SubResponse | None] = dict.fromkeys(requests)
        pending, started, attempt = list(requests), time.monotonic(), 1
        while True:
            retry, hints = self._round(pending, requests, results)
            wait = _sub_wait(policy, hints, attempt)
            if (
                not retry
                or attempt >= policy.max_attempts
                or time.monotonic() - started + wait > policy.max_total
            ):
                return results  # whatever is still pending stays unknown (None)
            cancellable_sleep(self._transport.cancel, self._what)(wait)
            pending, attempt = retry, attempt + 1

    def _round(
        self,
        pending: list[K],
        requests: Mapping[K, SubRequest],
        results: dict[K, SubResponse | None],
    ) -> tuple[list[K], list[float]]:
        """Send `pending` once, in batches of 20; record final answers in `results`. Returns
        the keys to send again and the Retry-After hints that came with them."""
        retry: list[K] = []
        hints: list[float] = []
        for start in range(0, len(pending), MAX_BATCH):
            keys = pending[start : start + MAX_BATCH]
            answers = self._post([(k, requests[k]) for k in keys])
            for key in keys:
                answer = answers.get(key)  # a missing answer is retried like a 503
                if answer is None or answer.status in RETRY_SUB_STATUSES:
                    retry.append(key)
                    hint = _retry_after(answer)
                    if hint is not None:
                        hints.append(hint)
                elif answer.status == 403:
                    settings = self._transport.settings
                    raise denied(settings, self._what, error_code(answer.body), self._permission)
                else:
                    results[key] = answer
        return retry, hints

    def _post(self, items: list[tuple[K, SubRequest]]) -> dict[K, SubResponse]:
        """One `POST /$batch` through the SDK pipeline; sub-responses matched by id (they
        come back in any order). Parsed by hand: the SDK's batch models may drop a JSON
        sub-response body."""
        keys = {str(n): key for n, (key, _) in enumerate(items, 1)}
        payload = {"requests": [req.to_json(str(n)) for n, (_, req) in enumerate(items, 1)]}
        content = json.dumps(payload).encode()
        transport = self._transport

        async def send() -> dict[str, Any]:
            info = RequestInformation(Method.POST)
            info.url = f"{transport.settings.graph_base}/$batch"
            info.headers.try_add("Accept", "application/json")
            info.set_stream_content(content, "application/json")
            return await transport.get_json(info)

        try:
            data = transport.run(send, self._what, self._permission)
        except SIGNALS:
            raise EntrasyncError(f"{self._what}: Graph refused the JSON batch itself") from None
        answers: dict[K, SubResponse] = {}
        for raw in data.get("responses") or ():
            parsed = _parse_sub_response(raw)
            if parsed is not None and parsed[0] in keys:
                answers[keys[parsed[0]]] = parsed[1]
        return answers


def _parse_sub_response(raw: Any) -> tuple[str, SubResponse] | None:
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
    return str(raw["id"]), SubResponse(status, names, body)


def _retry_after(answer: SubResponse | None) -> float | None:
    return None if answer is None else parse_retry_after(header(answer.headers, "Retry-After"))


def _sub_wait(policy: RetryPolicy, hints: list[float], attempt: int) -> float:
    """The largest Retry-After (capped), else exponential backoff with full jitter, as
    retry.py waits for a single request."""
    if hints:
        return min(max(hints), policy.max_retry_after)
    high = min(policy.backoff_max, policy.backoff_base * 2 ** (attempt - 1))
    return random.uniform(0, high)  # jitter, not cryptography


def _combined(answers: list[SubResponse | None], wanted: frozenset[str]) -> frozenset[str] | None:
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


def _exists(answer: SubResponse | None) -> bool | None:
    if answer is None:
        return None
    return {200: True, 404: False}.get(answer.status)
