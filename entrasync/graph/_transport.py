"""The one transport boundary: every Graph request of the client goes through `Transport.run`.

It owns the private event loop, the msgraph-sdk pipeline (Kiota's default middleware minus
`RetryHandler`, plus a counting middleware), the token source, the retry policy (tenacity,
retry.py) and cancellation. Reads (`_delta.py`) and JSON batches (`_batch.py`) only build
requests and read JSON; `_errors.py` says what a failed answer means.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
from kiota_abstractions.authentication import BaseBearerTokenAuthenticationProvider
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_http.kiota_client_factory import KiotaClientFactory
from kiota_http.middleware import RetryHandler
from kiota_http.middleware.middleware import BaseMiddleware
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.graph_request_adapter import GraphRequestAdapter
from msgraph.graph_service_client import GraphServiceClient
from msgraph_core import GraphClientFactory
from msgraph_core.middleware import GraphTelemetryHandler

from entrasync.errors import EntrasyncError, GraphUnavailable
from entrasync.graph._errors import (
    EXCHANGE,
    SIGNALS,
    Exchange,
    Failure,
    NotJson,
    classify,
    failure,
)
from entrasync.graph.auth import (
    MsalAccessTokenProvider,
    MsalCaches,
    TokenSource,
    body_kind,
    tls_hint,
)
from entrasync.graph.retry import Cancelled, RequestCounters, Transient, retry_async
from entrasync.graph.settings import GraphSettings
from entrasync.graph.tls import trust_context

T = TypeVar("T")

CANCEL_POLL = 0.05  # seconds between looks at the cancel event while a request runs


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
        exchange = EXCHANGE.get()
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


class Transport:
    """The SDK pipeline run synchronously on a private loop, with retries and cancellation."""

    def __init__(
        self,
        settings: GraphSettings,
        counters: RequestCounters,
        caches: MsalCaches | None,
        cancel: threading.Event | None,
    ) -> None:
        self.settings = settings
        self.cancel = cancel
        # Set when a reader gives up on a round (sync/prefetch.py): the request in flight is
        # cancelled and no other is sent by this client. The caller's `cancel` (the daemon's
        # stop) outlives the client; this one does not.
        self._abandoned = threading.Event()
        self.host = urlsplit(settings.graph_url).netloc
        context = trust_context(settings.ca_bundle) if settings.ca_bundle else None
        self.tokens = TokenSource(settings, counters, context, caches, cancel)
        self._loop = asyncio.new_event_loop()
        http = httpx.AsyncClient(
            base_url=settings.graph_base,
            verify=context if context is not None else True,
            timeout=httpx.Timeout(settings.timeout),
        )
        self._http = GraphClientFactory.create_with_custom_middleware(
            _middleware(counters), client=http
        )
        hostname = urlsplit(settings.graph_url).hostname or ""
        auth = BaseBearerTokenAuthenticationProvider(MsalAccessTokenProvider(self.tokens, hostname))
        adapter = GraphRequestAdapter(auth, client=self._http)
        adapter.base_url = settings.graph_base
        self.sdk: Any = GraphServiceClient(request_adapter=adapter)

    def abandon(self) -> None:
        """Cancel the request in flight (its retry waits included) and refuse later ones."""
        self._abandoned.set()

    def _stopped(self) -> bool:
        return self._abandoned.is_set() or (self.cancel is not None and self.cancel.is_set())

    def close(self) -> None:
        if not self._loop.is_closed():
            self._loop.run_until_complete(self._http.aclose())
            self._loop.close()
        self.tokens.close()

    def delta_config(self, query: Any) -> RequestConfiguration[Any]:
        """Delta requests take the page size as `Prefer: odata.maxpagesize` ($top is not
        supported on delta queries); Graph caps it (200 objects, 500 links per page)."""
        config: RequestConfiguration[Any] = RequestConfiguration(query_parameters=query)
        if self.settings.page_size:
            config.headers.add("Prefer", f"odata.maxpagesize={self.settings.page_size}")
        return config

    async def get_json(self, request: Any) -> dict[str, Any]:
        """Send a request built by the SDK; return the JSON body as plain data."""
        body = await self.sdk.request_adapter.send_primitive_async(
            request, "bytes", {"XXX": ODataError}
        )
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            exchange = EXCHANGE.get()
            status = exchange.status if exchange and exchange.status else 200
            content_type = exchange.content_type if exchange else ""
            raise NotJson(status, body_kind(content_type, body or b"")) from None
        if not isinstance(data, dict):
            raise EntrasyncError("Graph answered with JSON that is not an object")
        return data

    def run(self, call: Callable[[], Awaitable[T]], what: str, permission: str) -> T:
        """Run one request (with its retries) to completion; map failures to errors."""
        if self._stopped():
            raise Cancelled(f"{what}: cancelled")
        work = self._with_retries(call, what, permission)
        return self._loop.run_until_complete(self._cancellable(work, what))

    async def _cancellable(self, work: Awaitable[T], what: str) -> T:
        """Run `work` (a request with its retries) until done or until the cancel event is
        set or the client abandoned; then cancel it (the connection is dropped, a retry wait
        ends) and raise."""
        task = asyncio.ensure_future(work)
        while not task.done():
            await asyncio.wait({task}, timeout=CANCEL_POLL)
            if not task.done() and self._stopped():
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
            exchange = Exchange()
            token = EXCHANGE.set(exchange)
            try:
                return await call()
            except (EntrasyncError, *SIGNALS, Transient):
                raise
            except Exception as exc:
                answer = self._answer(exc, exchange, what)
                if answer.status == 401 and unauthorized == 0:
                    unauthorized += 1
                    self.tokens.drop_cached_tokens()  # revoked or expired early: fetch anew
                    raise Transient(
                        f"{what}: Graph rejected the access token", status=401
                    ) from None
                classified = classify(answer, what, permission, self.settings, self.host)
                raise classified from None
            finally:
                EXCHANGE.reset(token)

        policy = self.settings.retry
        try:
            return await retry_async(policy, attempt)
        except Transient as exc:
            raise GraphUnavailable(
                f"{exc.reason}; gave up (at most {policy.max_attempts} attempts within "
                f"{policy.max_total:g}s)"
            ) from None

    def _answer(self, exc: Exception, exchange: Exchange, what: str) -> Failure:
        """The failed answer behind `exc`; raises at once what is not an HTTP answer (a
        timeout or an unreachable host: Transient; a TLS failure: GraphUnavailable)."""
        if isinstance(exc, NotJson):
            return Failure(exc.status, exchange.headers, kind=exc.kind)
        if isinstance(exc, httpx.TimeoutException):
            raise Transient(f"{what}: timed out after {self.settings.timeout:g}s") from None
        if isinstance(exc, httpx.TransportError):
            if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                raise GraphUnavailable(
                    f"cannot reach {self.settings.graph_url}: {tls_hint(self.settings)}"
                ) from None
            raise Transient(
                f"{what}: cannot reach {self.settings.graph_url} ({type(exc).__name__})"
            ) from None
        answer = failure(exc, exchange)  # APIError, or whatever an older Kiota raises
        if answer is None:
            raise exc
        return answer
