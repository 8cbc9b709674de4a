"""The emulator's HTTPS server: identity platform (OIDC discovery, token endpoint) and the
Graph v1.0 endpoints entrasync uses, on one port of 127.0.0.1.

Why stdlib `ThreadingHTTPServer`: no extra dependency, real TLS, real keep-alive (HTTP/1.1)
so that both requests (MSAL) and httpx (the SDK) pool connections as they would against
Microsoft. The TLS handshake is deferred to the handler thread so that a client refusing
our certificate cannot stall the accept loop.

`authority_host` and `graph_url` are the same origin; paths do not collide (tenant ids are
GUIDs, Graph lives under `/v1.0`).

Graph requests are routed by `GraphApi` (_graph_api.py), which builds a `GraphResponse`
instead of writing to the socket, so that the sub-requests of a JSON batch (`POST
/v1.0/$batch`, https://learn.microsoft.com/graph/json-batching) go through the very same
routing, permission checks and fault rules as top-level requests. Besides the delta
(_graph_delta.py) and read endpoints, `POST /users/{id}/checkMemberGroups`
(https://learn.microsoft.com/graph/api/user-checkmembergroups) answers transitive membership,
which entrasync asks right before a purge. The identity platform is _identity.py.
"""

from __future__ import annotations

import json
import random
import socket
import ssl
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from entrasync.sim import _managed_identity
from entrasync.sim._federation import (
    TOKEN_EXCHANGE_AUDIENCE,
    FederatedCredential,
    FederatedIssuer,
)
from entrasync.sim._graph_api import GraphApi
from entrasync.sim._graph_http import (
    MAX_TOP,
    GraphError,
    GraphRequest,
    GraphResponse,
    fault_response,
    html_page,
    json_body,
)
from entrasync.sim._identity import identity
from entrasync.sim._managed_identity import ManagedIdentities
from entrasync.sim.auth import ALL_PERMISSIONS, AppRegistration, Directory
from entrasync.sim.certs import TlsFiles, write_tls_files
from entrasync.sim.faults import Fault, Faults, RequestLog, RequestRecord
from entrasync.sim.quirks import Quirks
from entrasync.sim.tenant import Tenant

__all__ = ["MAX_TOP", "EntraEmulator"]


class EntraEmulator:
    """An Entra tenant and Graph over HTTPS. Use as a context manager::

    with EntraEmulator() as emu:
        emu.register_app("client-id", secret="s3cret")
        user = emu.tenant.add_user("a@contoso.com")
        ... GraphSettings(authority_host=emu.authority_host, graph_url=emu.graph_url,
                          ca_bundle=emu.ca_file, tenant_id=emu.tenant_id, ...)

    `log` records every HTTP request; `batch_log` the sub-requests of JSON batches (kept
    apart so that request counts stay HTTP round trips). `batch_seed` seeds the shuffle of
    batch responses, which never come back in request order (as Graph allows). `quirks`
    switches on the real Graph's rough edges (quirks.py); it can be replaced at any time.

    `latency` (seconds, default 0) holds every Graph request (`/v1.0/...`) back that long
    before it is answered or faulted, as the round trip to the real Graph does (about 100 ms
    from a datacentre): `python -m bench.overlap` measures with it. It applies once per HTTP
    request (a JSON batch's sub-requests share their batch's), not to the identity platform,
    and on top of a fault's own `delay`; it can be changed at any time.
    """

    def __init__(
        self,
        tenant: Tenant | None = None,
        *,
        port: int = 0,
        page_size: int = 100,
        token_lifetime: int = 3599,
        workdir: Path | None = None,
        batch_seed: int | None = None,
        quirks: Quirks | None = None,
        latency: float = 0.0,
    ) -> None:
        self.tenant = tenant or Tenant()
        self.quirks = quirks or Quirks()
        self.directory = Directory(token_lifetime=token_lifetime)
        self.managed_identities = ManagedIdentities()
        self.faults = Faults()
        self.log = RequestLog()
        self.batch_log = RequestLog()
        self.batch_rng = random.Random(batch_seed)
        self._batch_lock = threading.Lock()
        self.page_size = page_size
        self.latency = latency
        self._port = port
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._workdir = workdir
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.tls: TlsFiles | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> EntraEmulator:
        if self._workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="entrasync-sim-")
            self._workdir = Path(self._tmp.name)
        self.tls = write_tls_files(self._workdir)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.tls.cert_file, self.tls.key_file)
        server = _Server(("127.0.0.1", self._port), _Handler)
        server.emulator = self
        server.socket = context.wrap_socket(
            server.socket, server_side=True, do_handshake_on_connect=False
        )
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> EntraEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- what clients need ------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("emulator not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def authority_host(self) -> str:
        return self.base_url

    @property
    def graph_url(self) -> str:
        return self.base_url

    @property
    def ca_file(self) -> Path:
        if self.tls is None:
            raise RuntimeError("emulator not started")
        return self.tls.ca_file

    @property
    def tenant_id(self) -> str:
        return self.tenant.tenant_id

    def shuffled(self, responses: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Batch responses in an order other than the requests' (when there are two or
        more): clients must match them by id (json-batching.md)."""
        with self._batch_lock:
            out = list(responses)
            self.batch_rng.shuffle(out)
        if len(out) > 1 and out == responses:
            out = out[1:] + out[:1]
        return out

    def register_app(
        self,
        client_id: str | None = None,
        *,
        secret: str | None = None,
        certificate_pem: bytes | None = None,
        permissions: set[str] | frozenset[str] = ALL_PERMISSIONS,
    ) -> AppRegistration:
        return self.directory.register_app(
            client_id or str(uuid.uuid4()),
            secret=secret,
            certificate_pem=certificate_pem,
            permissions=permissions,
        )

    def assign_managed_identity(
        self,
        client_id: str | None = None,
        *,
        system_assigned: bool = False,
        permissions: set[str] | frozenset[str] = ALL_PERMISSIONS,
    ) -> str:
        """Give "this machine" a managed identity (an app without any secret); its client id."""
        app = self.directory.register_app(client_id or str(uuid.uuid4()), permissions=permissions)
        if system_assigned:
            self.managed_identities.system_assigned = app.client_id
        else:
            self.managed_identities.user_assigned.add(app.client_id)
        return app.client_id

    def managed_identity_env(self, protocol: str = "app_service") -> dict[str, str]:
        """The environment a platform gives a process so that MSAL finds the endpoint:
        `app_service` (IDENTITY_ENDPOINT + IDENTITY_HEADER) or `imds` (the VM protocol, at
        this emulator instead of the instance metadata address)."""
        if protocol == "imds":
            return {"AZURE_POD_IDENTITY_AUTHORITY_HOST": self.base_url}
        return {
            "IDENTITY_ENDPOINT": f"{self.base_url}{_managed_identity.APP_SERVICE_PATH}",
            "IDENTITY_HEADER": self.managed_identities.identity_header,
        }

    def trust_issuer(self, issuer: str) -> FederatedIssuer:
        """An outside token issuer (a cluster's OIDC issuer) this tenant trusts."""
        trusted = FederatedIssuer(issuer)
        self.directory.federation.issuers[issuer] = trusted
        return trusted

    def add_federated_credential(
        self, client_id: str, issuer: str, subject: str, audience: str = TOKEN_EXCHANGE_AUDIENCE
    ) -> None:
        credentials = self.directory.federation.credentials.setdefault(client_id, [])
        credentials.append(FederatedCredential(issuer, subject, audience))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    emulator: EntraEmulator

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that reject our certificate or drop connections are normal in tests.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    # -- plumbing ---------------------------------------------------------------------------

    @property
    def emu(self) -> EntraEmulator:
        return self.server.emulator

    def _dispatch(self, method: str) -> None:
        self._method, self._started, self._recorded = method, time.monotonic(), False
        status = 0
        try:
            status = self._handle(method)
        except (ConnectionError, ssl.SSLError, TimeoutError):
            status = 0
        finally:
            self._record(status)

    def _record(self, status: int) -> None:
        """Log the request once: before its answer leaves (`_send`), so that a client that
        has its answer always finds the request in the log; else (dropped) at the end."""
        if not self._recorded:
            self._recorded = True
            self.emu.log.add(
                RequestRecord(
                    self._method,
                    self.path,
                    status,
                    self._started,
                    time.monotonic() - self._started,
                )
            )

    def _handle(self, method: str) -> int:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        latency = self.emu.latency
        if latency > 0 and self.path.startswith("/v1.0/"):
            time.sleep(latency)  # the round trip to Graph (EntraEmulator's `latency`)
        fault = self.emu.faults.match(self.path)
        if fault is not None and (answered := self._fault(fault, body)) is not None:
            return answered
        url = urlsplit(self.path)
        headers = {name.lower(): value for name, value in self.headers.items()}
        if url.path in _managed_identity.PATHS and method == "GET":
            return self._json(*_managed_identity.answer(self.emu, self.path, headers))
        if url.path.startswith("/v1.0/"):
            request = GraphRequest(method, self.path, headers, json_body(body))
            return self._reply(GraphApi(self.emu, request).handle())
        try:
            return self._json(*identity(self.emu, method, url.path, body))
        except GraphError as exc:
            return self._json(exc.status, {"error": {"code": exc.code, "message": exc.message}})

    def _fault(self, fault: Fault, body: bytes) -> int | None:
        """Answer a request with its fault; None when the fault only delays it."""
        if fault.delay:
            time.sleep(fault.delay)
        if fault.drop:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return 0
        if fault.html:  # a gateway's error page or a proxy's login page, not JSON
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            page = html_page(fault.status or 502, body if fault.echo else None)
            return self._send(fault.status or 502, page, "text/html; charset=utf-8", headers)
        if fault.status is not None:
            return self._reply(fault_response(fault))
        return None

    def _reply(self, response: GraphResponse) -> int:
        return self._send(
            response.status, response.encoded(), response.content_type, response.headers
        )

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str]) -> int:
        self._record(status)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
        return status

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> int:
        body = json.dumps(payload).encode()
        return self._send(status, body, "application/json", headers or {})
