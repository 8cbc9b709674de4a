"""Graph's wire shapes in the emulator: requests, responses, error bodies, delta and skip
tokens, and the query options the emulated endpoints understand.

Errors come as Graph writes them, `{"error": {"code", "message", "innerError"}}`
(https://learn.microsoft.com/graph/errors).
"""

from __future__ import annotations

import base64
import html
import json
import re
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

from entrasync.sim.faults import Fault
from entrasync.sim.quirks import Expiry

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


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> GraphResponse:
    return GraphResponse(status, {"error": {"code": code, "message": message}}, headers or {})


def fault_response(fault: Fault) -> GraphResponse:
    status = fault.status or 503
    headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
    code = fault.code or _default_code(status)
    return error_response(status, code, f"Injected fault {status}.", headers)


def method_not_allowed() -> GraphError:
    return GraphError(
        405, "Request_BadRequest", "Specified HTTP method is not allowed for the request target."
    )


def select_of(query: dict[str, str]) -> list[str] | None:
    value = query.get("$select")
    return [s.strip() for s in value.split(",") if s.strip()] if value else None


def filter_ids(expression: str | None) -> list[str] | None:
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


def json_body(body: bytes) -> Any:
    """The parsed JSON body; None when absent or unreadable (endpoints then answer 400)."""
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


def html_page(status: int, echo: bytes | None = None) -> bytes:
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


def expired(expiry: Expiry, link: str) -> GraphError:
    """An expired delta or skip token, refused as `expiry` says (quirks.py)."""
    message = "The sync state generation is not found. Restart the sync with an empty token."
    if expiry is Expiry.GONE:
        return GraphError(410, "syncStateNotFound", message, headers={"Location": link})
    if expiry is Expiry.BAD_REQUEST:
        return GraphError(400, "syncStateNotFound", message)
    if expiry is Expiry.RESYNC_REQUIRED:
        return GraphError(400, "resyncRequired", "Resync is required.")
    return GraphError(400, "badRequest", "Resync is required.", inner_code="resyncRequired")


def not_found(object_id: str) -> GraphError:
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
