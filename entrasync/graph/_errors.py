"""Failure classification: what a failed Graph answer means for the caller.

Failures are classified by the HTTP status the counting middleware recorded for the attempt
(`Exchange`), not by the exception type: Kiota raises `APIError` for an error body it cannot
parse only since 1.16 (older versions raise a bare `Exception` for a gateway's HTML page,
which would skip the retry policy). Sync-reset codes are looked for in the error's
`innerError` chain too (https://learn.microsoft.com/graph/errors: "loop through all the
error codes").
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import Any

import httpx
from kiota_abstractions.api_error import APIError

from entrasync.errors import EntrasyncError, GraphPermissionDenied, GraphUnavailable
from entrasync.graph.auth import BodyKind, answered
from entrasync.graph.retry import (
    BACKOFF_STATUSES,
    RETRY_AFTER_STATUSES,
    Transient,
    header,
    parse_retry_after,
)
from entrasync.graph.settings import GraphSettings

GROUP_PERMISSION = "GroupMember.Read.All"
USER_PERMISSION = "User.Read.All"
SYNC_RESET_CODES = frozenset(
    {"syncstatenotfound", "syncstateinvalid", "resyncrequired", "resyncrequiredexception"}
)


class SyncReset(Exception):
    """Graph no longer knows this delta/skip token: restart the stream."""


class ResourceNotFound(Exception):
    """A 404: the object is gone (inside a delta round, the round's state refers to it)."""


class NotJson(Exception):
    """A 2xx answer whose body is not JSON (a proxy's login page)."""

    def __init__(self, status: int, kind: BodyKind) -> None:
        super().__init__(kind.value)
        self.status = status
        self.kind = kind


# The internal signals: they never leave the client.
SIGNALS = (SyncReset, ResourceNotFound)


@dataclass
class Exchange:
    """The last HTTP answer of one attempt, as the counting middleware saw it."""

    status: int | None = None
    headers: httpx.Headers | None = None
    content_type: str = ""


EXCHANGE: contextvars.ContextVar[Exchange | None] = contextvars.ContextVar(
    "entrasync_graph_exchange", default=None
)


@dataclass(frozen=True)
class Failure:
    """A failed Graph answer, whatever exception the SDK raised for it."""

    status: int
    headers: Any = None
    codes: tuple[str, ...] = ()  # the OData error code, then the innerError chain's
    message: str = ""
    kind: BodyKind = BodyKind.JSON

    @property
    def code(self) -> str:
        return self.codes[0] if self.codes else ""


def failure(exc: Exception, exchange: Exchange) -> Failure | None:
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
    return Failure(
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


def error_code(body: Any) -> str:
    """The OData error code of a JSON error body (a batch sub-response's)."""
    error = body.get("error") if isinstance(body, dict) else None
    return str(error.get("code") or "") if isinstance(error, dict) else ""


def denied(settings: GraphSettings, what: str, code: str, permission: str) -> GraphPermissionDenied:
    """A 403, naming the permission to grant with admin consent."""
    noun = "permissions" if " and " in permission else "permission"
    return GraphPermissionDenied(
        f"{what}: Graph denied access ({code or 403}). The app registration "
        f"{settings.client_id} needs the Microsoft Graph application {noun} "
        f"{permission}, and an administrator must grant admin consent for it in "
        f"tenant {settings.tenant_id}"
    )


def classify(
    failure: Failure, what: str, permission: str, settings: GraphSettings, host: str
) -> Exception:
    """The exception a failed answer becomes: an internal signal, a Transient (retried), or
    the documented error (GraphPermissionDenied 77, GraphUnavailable 69, EntrasyncError)."""
    status, code = failure.status, failure.code
    subject = "Graph" if failure.kind is BodyKind.JSON else host
    said = f"{what}: {answered(subject, status, failure.kind)}"
    if status == 410 or any(c.lower() in SYNC_RESET_CODES for c in failure.codes):
        return SyncReset()
    if status in RETRY_AFTER_STATUSES:
        retry_after = parse_retry_after(header(failure.headers, "Retry-After"))
        return Transient(said, retry_after, status)
    if status in BACKOFF_STATUSES:
        return Transient(said, None, status)
    if failure.kind is not BodyKind.JSON:
        return GraphUnavailable(said)
    if status == 403:
        return denied(settings, what, code, permission)
    if status == 401:
        return GraphPermissionDenied(
            f"{what}: Graph rejected the access token twice ({code or 401}: {failure.message})"
        )
    if status == 404:
        return ResourceNotFound()
    return EntrasyncError(f"{what}: Graph answered {status} {code}: {failure.message}")
