"""Audit forwarding targets and the bytes each kind of collector receives (pure).

Three kinds of collector take the audit log (DESIGN.md, "Audit log"):

* ``syslog+tcp://host:port`` and ``syslog+tls://host:port``: RFC 5424 messages framed by
  octet counting (RFC 6587 section 3.4.1; the only framing RFC 5425 allows over TLS). One
  record per message: MSGID is the action, the structured data element ``entrasync@32473``
  carries seq, hash and run id (UTF-8, as PARAM-VALUE allows), and MSG is the record as JSON.
  The JSON is pure ASCII (``\\u`` escapes), so MSG needs no BOM (RFC 5424 section 6.4: only a
  UTF-8 MSG starts with one).
  32473 is the enterprise number RFC 5612 reserves for documentation: entrasync has none of
  its own, and an SD-ID without ``@`` is reserved to IANA.
* ``https://host/path``: JSON lines over HTTP POST (a SIEM's HTTP collector). A Splunk HTTP
  Event Collector's ``/services/collector`` and ``/services/collector/event`` endpoints take
  ``{"event": …}`` objects instead, so each record is wrapped for them; its ``/raw`` endpoint
  takes the plain lines.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

# RFC 5424 PRI: facility 13 ("log audit"), severity 6 (informational).
SYSLOG_PRI = 13 * 8 + 6
APP_NAME = "entrasync"
SD_ID = "entrasync@32473"
MAX_URL = 400  # the cursor is keyed by the target (a String(512) column)
_SPLUNK_EVENT_PATHS = ("/services/collector", "/services/collector/event")


class ForwardKind(StrEnum):
    SYSLOG_TCP = "syslog+tcp"
    SYSLOG_TLS = "syslog+tls"
    HTTPS = "https"


DEFAULT_PORTS = {ForwardKind.SYSLOG_TCP: 514, ForwardKind.SYSLOG_TLS: 6514, ForwardKind.HTTPS: 443}


@dataclass(frozen=True)
class ForwardTarget:
    kind: ForwardKind
    host: str
    port: int
    url: str  # as configured (an https query string may carry a collector's parameters)

    @property
    def display(self) -> str:
        """The target without its query string: what status, logs and the cursor name it by
        (a query string may hold a shared access signature)."""
        parts = urlsplit(self.url)
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.kind}://{host}:{self.port}{parts.path if self.is_https else ''}"

    @property
    def is_https(self) -> bool:
        return self.kind is ForwardKind.HTTPS

    @property
    def uses_tls(self) -> bool:
        return self.kind is not ForwardKind.SYSLOG_TCP

    @property
    def splunk_events(self) -> bool:
        return self.is_https and urlsplit(self.url).path.rstrip("/") in _SPLUNK_EVENT_PATHS


def parse_target(value: str) -> ForwardTarget:
    """`value` as a target; ValueError naming what is wrong (never echoing a credential)."""
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValueError("not a URL with a valid host and port") from None
    kinds = ", ".join(f"{kind}://" for kind in ForwardKind)
    if parts.scheme not in set(ForwardKind):
        raise ValueError(f"scheme {parts.scheme or '(none)'!r}: use one of {kinds}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("credentials in the URL: put the token in audit.forward_token_file")
    if not parts.hostname:
        raise ValueError("no host")
    try:
        parts.hostname.encode("idna")  # what the connection will do: a label over 63, say
    except UnicodeError:
        raise ValueError(f"host {parts.hostname[:80]!r} is not a valid host name") from None
    if len(value) > MAX_URL:
        raise ValueError(f"longer than {MAX_URL} characters")
    kind = ForwardKind(parts.scheme)
    if kind is not ForwardKind.HTTPS and (parts.path not in {"", "/"} or parts.query):
        raise ValueError("a syslog target is host:port only")
    return ForwardTarget(kind, parts.hostname, port or DEFAULT_PORTS[kind], value)


def record_json(record: Mapping[str, Any]) -> str:
    """A record as `audit export --format jsonl` writes it, in ASCII."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), default=str)


def syslog_frame(record: Mapping[str, Any], hostname: str, procid: int) -> bytes:
    """One record as an octet-counted RFC 5424 message."""
    header = " ".join(
        [
            f"<{SYSLOG_PRI}>1",
            str(record["at"]),
            _printable(hostname, 255),
            APP_NAME,
            str(procid),
            _printable(str(record["action"]), 32),
        ]
    )
    params = {"seq": record["seq"], "hash": record["hash"], "run_id": record.get("run_id")}
    data = " ".join(f'{k}="{_sd_escape(str(v))}"' for k, v in params.items() if v is not None)
    message = f"{header} [{SD_ID} {data}] {record_json(record)}".encode()
    return b"%d %s" % (len(message), message)


def https_body(records: Sequence[Mapping[str, Any]], splunk_events: bool) -> bytes:
    """A batch as JSON lines (or Splunk HEC event objects, one per line)."""
    if splunk_events:
        lines = [record_json({"event": r, "time": _epoch(r), "source": APP_NAME}) for r in records]
    else:
        lines = [record_json(r) for r in records]
    return ("\n".join(lines) + "\n").encode("ascii")


def _epoch(record: Mapping[str, Any]) -> float:
    return datetime.fromisoformat(str(record["at"]).replace("Z", "+00:00")).timestamp()


def _printable(value: str, limit: int) -> str:
    """An RFC 5424 header field: printable US-ASCII without spaces, or the nil value."""
    text = "".join(c for c in value if 33 <= ord(c) <= 126)[:limit]
    return text or "-"


def _sd_escape(value: str) -> str:
    """RFC 5424 section 6.3.3: '"', '\\' and ']' are escaped in a PARAM-VALUE."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")
