"""JSON lines over HTTPS POST: a SIEM's HTTP collector or a Splunk HTTP Event Collector.

A batch is delivered when the collector answers 2xx. 408, 425, 429 and 5xx (and no answer)
mean "later"; any other status means the request itself is wrong (a bad token, path or
size) and names the key to fix. The token is sent only in the Authorization header and is
scrubbed from whatever the collector's answer says.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from entrasync.domain.forwarding import ForwardTarget, https_body
from entrasync.errors import CollectorRefused, CollectorUnavailable

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
        self._token = token
        self._context = context
        self._timeout = timeout
        self._headers = {"Content-Type": "application/x-ndjson", "User-Agent": "entrasync"}
        if token:
            self._headers["Authorization"] = f"{auth_scheme} {token}"

    def deliver(self, records: Sequence[Mapping[str, Any]]) -> None:
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
        if answer.is_success:
            return
        said = f"{self._target.display}: HTTP {answer.status_code}{self._excerpt(answer)}"
        if answer.status_code in _RETRYABLE or answer.status_code >= 500:
            raise CollectorUnavailable(said)
        raise CollectorRefused(
            f"{said}: check audit.forward and audit.forward_token_file (the collector refused "
            "the records; they wait in the store)"
        )

    def _excerpt(self, answer: httpx.Response) -> str:
        kind = answer.headers.get("content-type", "")
        if "json" not in kind and not kind.startswith("text/plain"):
            return f" ({kind or 'no content type'}, {len(answer.content)} bytes)"
        text = " ".join(answer.text.split())[:_SHOWN_BODY]
        if self._token:
            text = text.replace(self._token, "***")
        return f": {text}" if text else ""


def _describe(exc: httpx.HTTPError) -> str:
    # The exception's own text may name the URL with its query string: say only its kind
    # and the underlying reason.
    cause = exc.__cause__ or exc.__context__
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    reason = getattr(cause, "strerror", None) or type(exc).__name__
    return str(reason)
