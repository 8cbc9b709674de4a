"""The emulated Graph v1.0 endpoints entrasync uses, routed by `GraphApi`.

`GraphApi` builds a `GraphResponse` instead of writing to the socket, so that the
sub-requests of a JSON batch (`POST /v1.0/$batch`, https://learn.microsoft.com/graph/json-batching)
go through the very same routing, permission checks and fault rules as top-level requests.
Besides the delta (_graph_delta.py) and read endpoints, `POST /users/{id}/checkMemberGroups`
(https://learn.microsoft.com/graph/api/user-checkmembergroups) answers transitive membership,
which entrasync asks right before a purge.
"""

from __future__ import annotations

import base64
import re
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from entrasync.sim._graph_delta import DeltaEndpoint
from entrasync.sim._graph_http import (
    MAX_BATCH,
    MAX_CHECK_GROUPS,
    MAX_TOP,
    WRITE_METHODS,
    GraphError,
    GraphRequest,
    GraphResponse,
    error_response,
    fault_response,
    html_page,
    method_not_allowed,
    not_found,
    select_of,
)
from entrasync.sim.auth import AppRegistration
from entrasync.sim.faults import RequestRecord
from entrasync.sim.tenant import MemberKind

# What `GET /users/{id}` returns without $select, of the properties the emulator models
# (user-get.md: businessPhones, displayName, givenName, id, jobTitle, mail, mobilePhone,
# officeLocation, preferredLanguage, surname, userPrincipalName).
DEFAULT_USER_PROPERTIES = ("displayName", "mail", "userPrincipalName")

if TYPE_CHECKING:
    from entrasync.sim.server import EntraEmulator


class GraphApi:
    """Routes one Graph request (top-level or inside a batch) and builds its response, so
    that batch sub-requests go through exactly the same code as ordinary requests."""

    def __init__(self, emu: EntraEmulator, request: GraphRequest) -> None:
        self.emu = emu
        self.req = request

    def handle(self) -> GraphResponse:
        try:
            return self._route()
        except GraphError as exc:
            response = error_response(exc.status, exc.code, exc.message, exc.headers)
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
            raise method_not_allowed()
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
            return DeltaEndpoint(self.emu, self.req).answer("users", query)
        if path == "/groups/delta":
            self._need(app, "GroupMember.Read.All")
            return DeltaEndpoint(self.emu, self.req).answer("groups", query)
        if path == "/users":
            self._need(app, "User.Read.All")
            with self.emu.tenant.lock:
                order = self.emu.tenant._sorted_users()
                size = int(query.get("$top") or self.emu.page_size)
                users = [self.emu.tenant.users[i].to_json(select_of(query)) for i in order[:size]]
            return GraphResponse(200, {"value": users})  # first page only: enough for checks
        match = re.fullmatch(r"/users/([^/]+)|/users\('((?:[^']|'')+)'\)", path)
        if match:
            self._need(app, "User.Read.All")
            return self._user(match.group(1), match.group(2), query)
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

    # -- one user ----------------------------------------------------------------------------

    def _user(
        self, segment: str | None, quoted: str | None, query: dict[str, str]
    ) -> GraphResponse:
        """`GET /users/{id | userPrincipalName}`, or `/users('{userPrincipalName}')`
        (https://learn.microsoft.com/graph/api/user-get): a UPN that begins with `$` fails
        with 400 in the plain form ("only system query options" may start with `$`) and must
        be quoted. Without `$select` only the default properties come back (displayName, id,
        mail, userPrincipalName among the emulated ones); with it, exactly the properties
        named, `id` only when asked for (user-get.md, example 3). No such user, or one in
        the recycle bin: 404 `Request_ResourceNotFound`."""
        if segment is not None and segment.startswith("$"):
            raise GraphError(
                400,
                "BadRequest",
                f"Invalid request: the segment '{segment}' starts with '$', which is reserved "
                "for system query options; use /users('{userPrincipalName}').",
            )
        key = segment if segment is not None else (quoted or "").replace("''", "'")
        user = self.emu.tenant.live_user(key)
        if user is None:
            raise not_found(key)
        select = select_of(query)
        item = user.to_json(select or list(DEFAULT_USER_PROPERTIES))
        item.pop("@odata.type", None)
        if select is not None and "id" not in select:
            item.pop("id", None)
        names = f"({','.join(select)})" if select else ""
        context = f"{self.emu.graph_url}/v1.0/$metadata#users{names}/$entity"
        return GraphResponse(200, {"@odata.context": context, **item})

    # -- checkMemberGroups -------------------------------------------------------------------

    def _check_member_groups(self, app: AppRegistration, user_key: str) -> GraphResponse:
        """`POST /users/{id | userPrincipalName}/checkMemberGroups`: of at most 20 group ids,
        those the user is a direct or transitive member of. Application permissions: User.Read.All
        and GroupMember.Read.All (or higher).
        https://learn.microsoft.com/graph/api/user-checkmembergroups"""
        self._need(app, "User.Read.All")
        self._need(app, "GroupMember.Read.All")
        if self.req.method != "POST":
            raise method_not_allowed()
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
            raise not_found(user_key)
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
            raise method_not_allowed()
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
            response = GraphApi(self.emu, sub).handle()
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
            return error_response(503, "ServiceUnavailable", "Injected fault 503.")
        if fault.html:  # base64 encoded by _sub_body, as any non-JSON body
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            status = fault.status or 502
            return GraphResponse(status, html_page(status), headers, "text/html")
        return fault_response(fault) if fault.status is not None else None

    # -- groups ------------------------------------------------------------------------------

    def _group(
        self,
        group_id: str,
        relation: str | None,
        users_only: bool,
        count: bool,
        query: dict[str, str],
    ) -> GraphResponse:
        """`GET /groups/{id}`, and its `members` or `transitiveMembers` (optionally cast to
        `graph.user`, optionally `$count`), paged with `$top` and `$skiptoken`."""
        tenant = self.emu.tenant
        with tenant.lock:
            group = tenant.groups.get(group_id)
            if group is None:
                raise not_found(group_id)
            if relation is None:
                item = {"id": group.id, "displayName": group.display_name}
                select = select_of(query)
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
                return self._count(len(members))
            size = int(query.get("$top") or self.emu.page_size)
            start = int(query.get("$skiptoken") or 0)
            items = self._members_json(members[start : start + size], query)
        payload: dict[str, Any] = {"value": items}
        if start + size < len(members):
            payload["@odata.nextLink"] = self._next_members_link(start + size)
        return GraphResponse(200, payload)

    def _count(self, count: int) -> GraphResponse:
        if self.req.headers.get("consistencylevel", "").lower() != "eventual":
            raise GraphError(
                400,
                "Request_BadRequest",
                "Count is not supported without the ConsistencyLevel: eventual header.",
            )
        return GraphResponse(200, str(count).encode(), {}, "text/plain")

    def _members_json(
        self, members: list[tuple[str, MemberKind]], query: dict[str, str]
    ) -> list[dict[str, Any]]:
        tenant = self.emu.tenant
        items: list[dict[str, Any]] = []
        for member_id, kind in members:
            if kind == "user" and (user := tenant.users.get(member_id)):
                items.append(user.to_json(select_of(query)))
            elif kind == "group" and (child := tenant.groups.get(member_id)):
                items.append(
                    {
                        "@odata.type": "#microsoft.graph.group",
                        "id": child.id,
                        "displayName": child.display_name,
                    }
                )
        return items

    def _next_members_link(self, skip: int) -> str:
        split = urlsplit(self.req.target)
        rest = "&".join(
            p
            for p in split.query.split("&")
            if p and not p.startswith("%24skiptoken") and not p.startswith("$skiptoken")
        )
        sep = "&" if rest else ""
        return f"{self.emu.graph_url}{split.path}?{rest}{sep}$skiptoken={skip}"


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
