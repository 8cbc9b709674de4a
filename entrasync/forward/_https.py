"""JSON lines over HTTPS POST: a SIEM's HTTP collector or a Splunk HTTP Event Collector.

A batch is delivered when the collector answers 2xx with something other than an HTML page
(a captive portal's or a gateway's 200 took nothing), and, from a Splunk HEC event endpoint,
with `"code": 0`. 408, 425, 429 and 5xx (and no answer) mean "later"; 413 means "a smaller
batch" (`PayloadTooLarge`); any other status means the request itself is wrong (a bad token
or path) and names the key to fix. The token is sent only in the Authorization header; it and
the URL's query values are scrubbed from whatever the collector's answer says.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

from entrasync.domain.forwarding import ForwardTarget, https_body
from entrasync.errors import CollectorRefused, CollectorUnavailable, PayloadTooLarge

_RETRYABLE = {408, 425, 429}
_SHOWN_BODY = 200


class HttpsSender:
    def __init__(
        self,
        target: ForwardTarget,
        context: ssl.SSLContext,
        token: str | None,
        auth_scheme: str,
        timeout: float,
    ) -> None:
        self._target = target
        # Never shown, whatever the collector echoes: the token and the URL's query values
        # (a shared access signature, say).
        query = parse_qsl(urlsplit(target.url).query)
        self._secrets = [s for s in (token, *(value for _, value in query)) if s]
        self._context = context
        self._timeout = timeout
        self._headers = {"Content-Type": "application/x-ndjson", "User-Agent": "entrasync"}
        if token:
            self._headers["Authorization"] = f"{auth_scheme} {token}"

    def deliver(self, records: Sequence[Mapping[str, Any]]) -> None:
        answer = self._post(records)
        said = f"{self._target.display}: HTTP {answer.status_code}{self._excerpt(answer)}"
        if answer.is_success:
            self._check_taken(answer, said)
            return
        if answer.status_code == 413:
            raise PayloadTooLarge(said)
        if answer.status_code in _RETRYABLE or answer.status_code >= 500:
            raise CollectorUnavailable(said)
        raise CollectorRefused(
            f"{said}: check audit.forward and audit.forward_token_file (the collector refused "
            "the records; they wait in the store)"
        )

    def _check_taken(self, answer: httpx.Response, said: str) -> None:
        """A 2xx from a captive portal or a gateway's HTML page took nothing; a Splunk HEC
        says `"code": 0` when it took the events."""
        kind = body_kind(answer)
        if kind is _Body.HTML:
            raise CollectorUnavailable(f"{said} with an HTML page: not a collector's answer")
        if self._target.splunk_events:
            code = _json_field(answer, "code") if kind is _Body.JSON else None
            if code != 0:
                raise CollectorUnavailable(f"{said}: Splunk did not confirm the events")

    def _post(self, records: Sequence[Mapping[str, Any]]) -> httpx.Response:
        body = https_body(records, self._target.splunk_events)
        client = httpx.Client(verify=self._context, timeout=self._timeout, headers=self._headers)
        try:
            with client:
                answer = client.post(self._target.url, content=body)
        except httpx.HTTPError as exc:
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, ssl.SSLCertVerificationError):
                raise CollectorRefused(
                    f"{self._target.display}: certificate not trusted ({cause.verify_message}): "
                    "check audit.forward_ca_bundle"
                ) from None
            raise CollectorUnavailable(f"{self._target.display}: {_describe(exc)}") from None
        return answer

    def _excerpt(self, answer: httpx.Response) -> str:
        """What the collector said, when it is JSON or plain text: scrubbed of the token and
        of the URL's query values first, then cut (a cut token would not be found)."""
        if body_kind(answer) not in {_Body.JSON, _Body.TEXT}:  # an HTML page may echo a form
            kind = answer.headers.get("content-type", "")
            return f" ({kind or 'no content type'}, {len(answer.content)} bytes)"
        text = " ".join(answer.text.split())
        for secret in self._secrets:
            text = text.replace(secret, "***")
        text = text[:_SHOWN_BODY]
        return f": {text}" if text else ""


class _Body(Enum):
    JSON = "json"
    TEXT = "text"
    HTML = "html"
    OTHER = "other"


def body_kind(answer: httpx.Response) -> _Body:
    kind = answer.headers.get("content-type", "").lower()
    if "html" in kind or answer.content.lstrip()[:1] == b"<":
        return _Body.HTML if answer.content.strip() else _Body.OTHER
    if "json" in kind:
        return _Body.JSON
    return _Body.TEXT if kind.startswith("text/plain") else _Body.OTHER


def _json_field(answer: httpx.Response, name: str) -> object:
    try:
        body = answer.json()
    except ValueError:
        return None
    return body.get(name) if isinstance(body, dict) else None


def _describe(exc: httpx.HTTPError) -> str:
    # The exception's own text may name the URL with its query string: say only its kind
    # and the underlying reason.
    cause = exc.__cause__ or exc.__context__
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    reason = getattr(cause, "strerror", None) or type(exc).__name__
    return str(reason)
