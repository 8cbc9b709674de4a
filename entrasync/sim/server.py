"""The emulator's HTTPS server: identity platform (OIDC discovery, token endpoint) and the
Graph v1.0 endpoints entrasync uses, on one port of 127.0.0.1.

Why stdlib `ThreadingHTTPServer`: no extra dependency, real TLS, real keep-alive (HTTP/1.1)
so that both requests (MSAL) and httpx (the SDK) pool connections as they would against
Microsoft. The TLS handshake is deferred to the handler thread so that a client refusing
our certificate cannot stall the accept loop.

`authority_host` and `graph_url` are the same origin; paths do not collide (tenant ids are
GUIDs, Graph lives under `/v1.0`).

Graph requests are routed by `_GraphApi`, which builds a `GraphResponse` instead of writing
to the socket, so that the sub-requests of a JSON batch (`POST /v1.0/$batch`,
https://learn.microsoft.com/graph/json-batching) go through the very same routing,
permission checks and fault rules as top-level requests. Besides the delta and read
endpoints, `POST /users/{id}/checkMemberGroups`
(https://learn.microsoft.com/graph/api/user-checkmembergroups) answers transitive membership,
which entrasync asks right before a purge.
"""

from __future__ import annotations

import base64
import html
import json
import random
import re
import socket
import ssl
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from entrasync.sim.auth import ALL_PERMISSIONS, AppRegistration, Directory, TokenError
from entrasync.sim.certs import TlsFiles, write_tls_files
from entrasync.sim.faults import Fault, Faults, RequestLog, RequestRecord
from entrasync.sim.quirks import Expiry, Quirks
from entrasync.sim.tenant import SyncStateExpired, Tenant

MAX_FILTER_IDS = 50
MAX_TOP = 999
MAX_BATCH = 20  # requests per JSON batch (json-batching.md, "Batch size limitations")
MAX_CHECK_GROUPS = 20  # group ids per checkMemberGroups call (user-checkmembergroups.md)
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH"})


class GraphError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        inner_code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.inner_code = inner_code
        self.headers = headers or {}


def encode_token(state: dict[str, Any]) -> str:
    raw = json.dumps(state, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str) -> dict[str, Any]:
    try:
        state = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except ValueError as exc:
        raise GraphError(400, "Request_BadRequest", "Invalid delta or skip token.") from exc
    if not isinstance(state, dict):
        raise GraphError(400, "Request_BadRequest", "Invalid delta or skip token.")
    return state


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
    ) -> None:
        self.tenant = tenant or Tenant()
        self.quirks = quirks or Quirks()
        self.directory = Directory(token_lifetime=token_lifetime)
        self.faults = Faults()
        self.log = RequestLog()
        self.batch_log = RequestLog()
        self.batch_rng = random.Random(batch_seed)
        self._batch_lock = threading.Lock()
        self.page_size = page_size
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

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
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
        fault = self.emu.faults.match(self.path)
        if fault is not None and (answered := self._fault(fault, body)) is not None:
            return answered
        url = urlsplit(self.path)
        if url.path.startswith("/v1.0/"):
            headers = {name.lower(): value for name, value in self.headers.items()}
            request = GraphRequest(method, self.path, headers, _json_body(body))
            return self._reply(_GraphApi(self.emu, request).handle())
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        try:
            return self._identity(method, url.path, query, body)
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
            page = _html_page(fault.status or 502, body if fault.echo else None)
            return self._send(fault.status or 502, page, "text/html; charset=utf-8", headers)
        if fault.status is not None:
            return self._reply(_fault_response(fault))
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

    # -- identity platform ------------------------------------------------------------------

    def _identity(self, method: str, path: str, query: dict[str, str], body: bytes) -> int:
        base = self.emu.base_url
        tenant = self.emu.tenant_id
        if method == "GET" and path == "/common/discovery/instance":
            return self._json(
                200,
                {
                    "tenant_discovery_endpoint": f"{base}/{tenant}/v2.0/.well-known/"
                    "openid-configuration",
                    "api-version": "1.1",
                    "metadata": [],
                },
            )
        match = re.fullmatch(
            r"/([^/]+)/(v2\.0/\.well-known/openid-configuration|oauth2/v2\.0/token)", path
        )
        if match is None:
            raise GraphError(404, "NotFound", f"No such endpoint {path}")
        if match.group(1) not in (tenant, "organizations"):
            return self._json(
                400,
                {
                    "error": "invalid_tenant",
                    "error_description": f"AADSTS90002: Tenant '{match.group(1)}' not found.",
                },
            )
        root = f"{base}/{tenant}"
        if method == "GET" and match.group(2).startswith("v2.0"):
            return self._json(
                200,
                {
                    "issuer": f"{root}/v2.0",
                    "token_endpoint": f"{root}/oauth2/v2.0/token",
                    "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
                    "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
                    "jwks_uri": f"{base}/{tenant}/discovery/v2.0/keys",
                    "response_types_supported": ["code", "id_token", "token"],
                    "token_endpoint_auth_methods_supported": [
                        "client_secret_post",
                        "private_key_jwt",
                    ],
                    "tenant_region_scope": "EU",
                },
            )
        if method != "POST":
            raise GraphError(405, "NotFound", "Use POST for the token endpoint.")
        form = {k: v[-1] for k, v in parse_qs(body.decode()).items()}
        scope = form.get("scope", "")
        if f"{self.emu.graph_url}/.default" not in scope.split():
            return self._json(
                400,
                {
                    "error": "invalid_scope",
                    "error_description": f"AADSTS1002012: The provided value for scope "
                    f"{scope} is not valid. Client credential flows must have a scope "
                    "value with /.default suffixed to the resource identifier.",
                },
            )
        try:
            result = self.emu.directory.issue(form, f"{root}/oauth2/v2.0/token")
        except TokenError as exc:
            return self._json(
                exc.status, {"error": exc.error, "error_description": exc.description}
            )
        return self._json(200, result)


# -- Graph ------------------------------------------------------------------------------------


@dataclass
class GraphRequest:
    """One Graph request: a top-level one, or a sub-request of a JSON batch."""

    method: str
    target: str  # "/v1.0/…" with the query string
    headers: dict[str, str]  # names lower-cased
    body: Any = None  # the parsed JSON body, if any
    in_batch: bool = False


@dataclass
class GraphResponse:
    status: int
    payload: Any  # a JSON value, or bytes when `content_type` is not JSON
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    def encoded(self) -> bytes:
        if isinstance(self.payload, bytes):
            return self.payload
        return json.dumps(self.payload).encode()


def _error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> GraphResponse:
    return GraphResponse(status, {"error": {"code": code, "message": message}}, headers or {})


def _fault_response(fault: Fault) -> GraphResponse:
    status = fault.status or 503
    headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
    code = fault.code or _default_code(status)
    return _error(status, code, f"Injected fault {status}.", headers)


class _GraphApi:
    """Routes one Graph request (top-level or inside a batch) and builds its response, so
    that batch sub-requests go through exactly the same code as ordinary requests."""

    def __init__(self, emu: EntraEmulator, request: GraphRequest) -> None:
        self.emu = emu
        self.req = request

    def handle(self) -> GraphResponse:
        try:
            return self._route()
        except GraphError as exc:
            response = _error(exc.status, exc.code, exc.message, exc.headers)
            if exc.inner_code:
                response.payload["error"]["innerError"] = {"code": exc.inner_code}
            return response

    def _route(self) -> GraphResponse:
        url = urlsplit(self.req.target)
        path = unquote(url.path)[len("/v1.0") :]
        path = path.replace("/microsoft.graph.", "/graph.").rstrip("/")
        path = re.sub(r"/delta\(\)$", "/delta", path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        app = self._app()
        if path == "/$batch":
            return self._batch()
        match = re.fullmatch(r"/users/([^/]+)/(?:graph\.)?checkMemberGroups", path)
        if match:
            return self._check_member_groups(app, match.group(1))
        if self.req.method != "GET":
            raise _method_not_allowed()
        return self._read(app, path, query)

    def _read(self, app: AppRegistration, path: str, query: dict[str, str]) -> GraphResponse:
        top = query.get("$top")
        if top is not None and (not top.isdigit() or not 1 <= int(top) <= MAX_TOP):
            raise GraphError(
                400,
                "Request_BadRequest",
                f"Invalid page size specified: '{top}'. Must be between 1 and {MAX_TOP} inclusive.",
            )
        if path == "/users/delta":
            self._need(app, "User.Read.All")
            return self._delta("users", query)
        if path == "/groups/delta":
            self._need(app, "GroupMember.Read.All")
            return self._delta("groups", query)
        if path == "/users":
            self._need(app, "User.Read.All")
            with self.emu.tenant.lock:
                order = self.emu.tenant._sorted_users()
                size = int(query.get("$top") or self.emu.page_size)
                users = [self.emu.tenant.users[i].to_json(_select(query)) for i in order[:size]]
            return GraphResponse(200, {"value": users})  # first page only: enough for checks
        match = re.fullmatch(r"/users/([^/]+)", path)
        if match:
            self._need(app, "User.Read.All")
            user = self.emu.tenant.live_user(match.group(1))
            if user is None:
                raise _not_found(match.group(1))
            return GraphResponse(200, user.to_json(_select(query)))
        match = re.fullmatch(
            r"/groups/([^/]+)(?:/(members|transitiveMembers)(/graph\.user)?(/\$count)?)?", path
        )
        if match:
            self._need(app, "GroupMember.Read.All")
            return self._group(
                match.group(1), match.group(2), bool(match.group(3)), bool(match.group(4)), query
            )
        raise GraphError(400, "BadRequest", f"Resource not found for the segment '{path}'.")

    def _app(self) -> AppRegistration:
        auth = self.req.headers.get("authorization", "")
        app = None
        if auth.startswith("Bearer "):
            app = self.emu.directory.app_for_token(auth[len("Bearer ") :])
        if app is None:
            raise GraphError(
                401,
                "InvalidAuthenticationToken",
                "Access token is empty." if not auth else "Access token validation failure.",
            )
        return app

    def _need(self, app: AppRegistration, permission: str) -> None:
        if not app.grants(permission):
            raise GraphError(
                403,
                "Authorization_RequestDenied",
                "Insufficient privileges to complete the operation.",
            )

    # -- checkMemberGroups -------------------------------------------------------------------

    def _check_member_groups(self, app: AppRegistration, user_key: str) -> GraphResponse:
        """`POST /users/{id | userPrincipalName}/checkMemberGroups`: of at most 20 group ids,
        those the user is a direct or transitive member of. Application permissions: User.Read.All
        and GroupMember.Read.All (or higher).
        https://learn.microsoft.com/graph/api/user-checkmembergroups"""
        self._need(app, "User.Read.All")
        self._need(app, "GroupMember.Read.All")
        if self.req.method != "POST":
            raise _method_not_allowed()
        body = self.req.body
        group_ids = body.get("groupIds") if isinstance(body, dict) else None
        if not isinstance(group_ids, list) or not all(isinstance(g, str) for g in group_ids):
            raise GraphError(
                400, "Request_BadRequest", "The request body needs groupIds, a string collection."
            )
        if len(group_ids) > MAX_CHECK_GROUPS:
            raise GraphError(
                400,
                "Request_BadRequest",
                f"Too many groupIds: at most {MAX_CHECK_GROUPS} groups can be checked at once.",
            )
        user = self.emu.tenant.live_user(user_key)
        if user is None:
            raise _not_found(user_key)
        groups = self.emu.tenant.member_of(user.id)
        value = list(dict.fromkeys(g for g in group_ids if g.lower() in groups))
        context = f"{self.emu.graph_url}/v1.0/$metadata#Collection(Edm.String)"
        return GraphResponse(200, {"@odata.context": context, "value": value})

    # -- JSON batching -----------------------------------------------------------------------

    def _batch(self) -> GraphResponse:
        """`POST /$batch`: at most 20 requests, each answered on its own (its status, headers
        and body) under one 200; responses come back in any order, matched by `id`. A
        malformed batch fails as a whole with 400. https://learn.microsoft.com/graph/json-batching"""
        if self.req.method != "POST":
            raise _method_not_allowed()
        if self.req.in_batch:
            raise GraphError(400, "BadRequest", "A batch cannot contain another batch.")
        requests = _batch_requests(self.req.body)
        responses = [self._sub_response(r) for r in requests]
        return GraphResponse(200, {"responses": self.emu.shuffled(responses)})

    def _sub_response(self, request: dict[str, Any]) -> dict[str, Any]:
        url = str(request["url"])
        target = "/v1.0" + (url if url.startswith("/") else "/" + url)
        started = time.monotonic()
        response = self._sub_fault(target)
        if response is None:
            headers = {str(k).lower(): str(v) for k, v in (request.get("headers") or {}).items()}
            headers["authorization"] = self.req.headers.get("authorization", "")
            sub = GraphRequest(
                str(request["method"]).upper(), target, headers, request.get("body"), True
            )
            response = _GraphApi(self.emu, sub).handle()
        self.emu.batch_log.add(
            RequestRecord(
                str(request["method"]).upper(),
                target,
                response.status,
                started,
                time.monotonic() - started,
            )
        )
        return {
            "id": request["id"],
            "status": response.status,
            "headers": {"Content-Type": response.content_type, **response.headers},
            "body": _sub_body(response),
        }

    def _sub_fault(self, target: str) -> GraphResponse | None:
        """A fault rule matching a sub-request answers it alone, as Graph throttles the
        requests of a batch individually (each with its own Retry-After header)."""
        fault = self.emu.faults.match(target)
        if fault is None:
            return None
        if fault.delay:
            time.sleep(fault.delay)
        if fault.drop:  # no connection to drop inside a batch body
            return _error(503, "ServiceUnavailable", "Injected fault 503.")
        if fault.html:  # base64 encoded by _sub_body, as any non-JSON body
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            status = fault.status or 502
            return GraphResponse(status, _html_page(status), headers, "text/html")
        return _fault_response(fault) if fault.status is not None else None

    # -- groups and delta --------------------------------------------------------------------

    def _group(
        self,
        group_id: str,
        relation: str | None,
        users_only: bool,
        count: bool,
        query: dict[str, str],
    ) -> GraphResponse:
        tenant = self.emu.tenant
        with tenant.lock:
            group = tenant.groups.get(group_id)
            if group is None:
                raise _not_found(group_id)
            if relation is None:
                item = {"id": group.id, "displayName": group.display_name}
                select = _select(query)
                if select:
                    item = {k: v for k, v in item.items() if k in select or k == "id"}
                return GraphResponse(200, item)
            if relation == "members":
                members = sorted(group.members.items())
            else:
                members = tenant.transitive_members(group_id)
            if users_only:
                members = [(m, k) for m, k in members if k == "user"]
            if count:
                if self.req.headers.get("consistencylevel", "").lower() != "eventual":
                    raise GraphError(
                        400,
                        "Request_BadRequest",
                        "Count is not supported without the ConsistencyLevel: eventual header.",
                    )
                return GraphResponse(200, str(len(members)).encode(), {}, "text/plain")
            size = int(query.get("$top") or self.emu.page_size)
            start = int(query.get("$skiptoken") or 0)
            items: list[dict[str, Any]] = []
            for member_id, kind in members[start : start + size]:
                if kind == "user" and (user := tenant.users.get(member_id)):
                    items.append(user.to_json(_select(query)))
                elif kind == "group" and (child := tenant.groups.get(member_id)):
                    items.append(
                        {
                            "@odata.type": "#microsoft.graph.group",
                            "id": child.id,
                            "displayName": child.display_name,
                        }
                    )
        payload: dict[str, Any] = {"value": items}
        if start + size < len(members):
            split = urlsplit(self.req.target)
            rest = "&".join(
                p
                for p in split.query.split("&")
                if p and not p.startswith("%24skiptoken") and not p.startswith("$skiptoken")
            )
            sep = "&" if rest else ""
            payload["@odata.nextLink"] = (
                f"{self.emu.graph_url}{split.path}?{rest}{sep}$skiptoken={start + size}"
            )
        return GraphResponse(200, payload)

    def _delta(self, resource: str, query: dict[str, str]) -> GraphResponse:
        tenant = self.emu.tenant
        token = query.get("$skiptoken") or query.get("$deltatoken")
        if token:
            state = decode_token(token)
            if state.get("r") != resource:
                raise GraphError(400, "Request_BadRequest", "Token is for another resource.")
            if "$deltatoken" in query and not query.get("$skiptoken"):
                state["to"] = tenant.seq  # a new round starts at the delta link
                state["c"] = None
        else:
            state = {
                "r": resource,
                "e": tenant.epoch,
                "frm": None,
                "to": tenant.seq,
                "sel": _select(query),
                "n": int(query.get("$top") or self._max_page_size() or self.emu.page_size),
                "c": None,
            }
            if resource == "groups":
                state["ids"] = _filter_ids(query.get("$filter"))
        link = f"{self.emu.graph_url}/v1.0/{resource}/delta()"
        carried: list[dict[str, Any]] = state.pop("rp", None) or []
        try:
            items, outcome = self._delta_page(resource, state, bool(query.get("$skiptoken")))
        except SyncStateExpired as exc:
            raise _expired(self.emu.quirks.expiry, link) from exc
        if resource == "users" and state.get("frm") is not None and self.emu.quirks.partial_users:
            items = self._partial(items, state)
        items = carried + self._replayed(items, outcome)
        payload: dict[str, Any] = {
            "@odata.context": f"{self.emu.graph_url}/v1.0/$metadata#{resource}",
            "value": items,
        }
        if "next" in outcome:
            payload["@odata.nextLink"] = f"{link}?$skiptoken={encode_token(outcome['next'])}"
        else:
            payload["@odata.deltaLink"] = f"{link}?$deltatoken={encode_token(outcome['delta'])}"
        return GraphResponse(200, payload)

    def _delta_page(
        self, resource: str, state: dict[str, Any], mid_round: bool
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The tenant's page for `state`, shaped by the quirks: a 404 when an object of the
        round vanished between pages, a random page size (possibly an empty page)."""
        tenant, quirks = self.emu.tenant, self.emu.quirks
        tenant.check_state(state)
        if quirks.vanished_404 and mid_round and (gone := tenant.vanished_since(state)):
            raise _not_found(gone)
        requested = int(state["n"])
        size = quirks.size(requested) if quirks.ragged_pages else requested
        if size == 0:
            return [], {"next": dict(state)}  # an empty page; the same state comes next
        sized = {**state, "n": size}
        if resource == "users":
            items, outcome = tenant.users_delta(sized)
        else:
            items, outcome = tenant.groups_delta(sized, split=quirks.split_members)
        for key in ("next", "delta"):
            if key in outcome:
                outcome[key]["n"] = requested
        return items, outcome

    def _partial(self, items: list[dict[str, Any]], state: dict[str, Any]) -> list[dict[str, Any]]:
        """Leave out a random subset of the properties that did not change (quirks.py)."""
        changed = self.emu.tenant.changed_properties(int(state["frm"]), int(state["to"]))
        out = []
        for item in items:
            props = changed.get(str(item["id"]))
            if "@removed" in item or props is None:
                out.append(item)
                continue
            optional = [k for k in item if k not in ("id", "@odata.type") and k not in props]
            dropped = set(self.emu.quirks.subset(optional))
            out.append({k: v for k, v in item.items() if k not in dropped})
        return out

    def _replayed(
        self, items: list[dict[str, Any]], outcome: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """Send some items twice: again on this page, or on the next page of the round."""
        quirks = self.emu.quirks
        out = list(items)
        for item in items:
            if not quirks.chance(quirks.replays):
                continue
            if "next" in outcome and quirks.chance(0.5):
                outcome["next"].setdefault("rp", []).append(item)
            else:
                out.append(item)
        return out

    def _max_page_size(self) -> int | None:
        prefer = self.req.headers.get("prefer", "")
        match = re.search(r"odata\.maxpagesize=(\d+)", prefer)
        return int(match.group(1)) if match else None


def _batch_requests(body: Any) -> list[dict[str, Any]]:
    """The batch's requests, or GraphError 400 for a malformed batch (json-batching.md)."""
    requests = body.get("requests") if isinstance(body, dict) else None
    if not isinstance(requests, list) or not all(isinstance(r, dict) for r in requests):
        raise GraphError(400, "BadRequest", "Invalid batch payload format.")
    if len(requests) > MAX_BATCH:
        raise GraphError(
            400, "BadRequest", f"Number of requests in a batch cannot exceed {MAX_BATCH}."
        )
    seen: set[str] = set()
    for request in requests:
        required = (request.get("id"), request.get("method"), request.get("url"))
        if not all(isinstance(v, str) and v for v in required):
            raise GraphError(400, "BadRequest", "Each request needs an id, a method and a url.")
        if str(request["id"]).lower() in seen:  # ids are not case-sensitive
            raise GraphError(400, "BadRequest", f"Duplicate request id {request['id']}.")
        seen.add(str(request["id"]).lower())
        has_type = any(str(k).lower() == "content-type" for k in request.get("headers") or {})
        if request["method"].upper() in WRITE_METHODS and ("body" not in request or not has_type):
            raise GraphError(
                400,
                "BadRequest",
                f"Write request id : {request['id']} does not contain Content-Type header or body.",
            )
    return requests


def _sub_body(response: GraphResponse) -> Any:
    """A sub-response's body: JSON inline, anything else base64 encoded (json-batching.md)."""
    if isinstance(response.payload, bytes):
        return base64.b64encode(response.payload).decode()
    return response.payload


def _method_not_allowed() -> GraphError:
    return GraphError(
        405, "Request_BadRequest", "Specified HTTP method is not allowed for the request target."
    )


def _select(query: dict[str, str]) -> list[str] | None:
    value = query.get("$select")
    return [s.strip() for s in value.split(",") if s.strip()] if value else None


def _filter_ids(expression: str | None) -> list[str] | None:
    if not expression:
        return None
    parts = [p.strip() for p in re.split(r"\s+or\s+", expression.strip())]
    ids = []
    for part in parts:
        match = re.fullmatch(r"id\s+eq\s+'([^']+)'", part)
        if match is None:
            raise GraphError(400, "Request_UnsupportedQuery", f"Unsupported filter clause: {part}")
        ids.append(match.group(1))
    if len(ids) > MAX_FILTER_IDS:
        raise GraphError(
            400,
            "Request_UnsupportedQuery",
            f"The number of items in the filter exceeds {MAX_FILTER_IDS}.",
        )
    return ids


def _json_body(body: bytes) -> Any:
    """The parsed JSON body; None when absent or unreadable (endpoints then answer 400)."""
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


def _html_page(status: int, echo: bytes | None = None) -> bytes:
    """A gateway's error page; with `echo`, a login page that re-posts the request's form
    fields (client secret included) as hidden inputs."""
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Error"
    fields = ""
    if echo is not None:
        form = parse_qs(echo.decode("utf-8", "replace"), keep_blank_values=True)
        fields = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v[-1])}">'
            for k, v in form.items()
        )
        fields = f'<form method="post" action="/login">{fields}<button>Sign in</button></form>'
    return (
        f"<!DOCTYPE html>\n<html><head><title>{status} {reason}</title></head><body><center>"
        f"<h1>{status} {reason}</h1></center>{fields}<hr><center>gateway</center></body></html>"
    ).encode()


def _expired(expiry: Expiry, link: str) -> GraphError:
    """An expired delta or skip token, refused as `expiry` says (quirks.py)."""
    message = "The sync state generation is not found. Restart the sync with an empty token."
    if expiry is Expiry.GONE:
        return GraphError(410, "syncStateNotFound", message, headers={"Location": link})
    if expiry is Expiry.BAD_REQUEST:
        return GraphError(400, "syncStateNotFound", message)
    if expiry is Expiry.RESYNC_REQUIRED:
        return GraphError(400, "resyncRequired", "Resync is required.")
    return GraphError(400, "badRequest", "Resync is required.", inner_code="resyncRequired")


def _not_found(object_id: str) -> GraphError:
    return GraphError(
        404,
        "Request_ResourceNotFound",
        f"Resource '{object_id}' does not exist or one of its queried reference-property "
        "objects are not present.",
    )


def _default_code(status: int) -> str:
    return {
        429: "TooManyRequests",
        503: "ServiceUnavailable",
        504: "GatewayTimeout",
        410: "syncStateNotFound",
    }.get(status, "InjectedFault")
