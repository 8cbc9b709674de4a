"""Where audit records leave for an outside collector (`audit.forward`): the one place that
opens connections to a SIEM. `open_sender(settings)` gives a `Sender` whose `deliver(records)`
returns only when the collector has taken every record, and raises `CollectorUnavailable`
(try again later) or `CollectorRefused` (the configuration must change) otherwise."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from entrasync.domain.forwarding import ForwardTarget
from entrasync.forward._https import HttpsSender
from entrasync.forward._syslog import SyslogSender, connect, named_failures
from entrasync.forward._tls import client_context

__all__ = ["Sender", "open_sender", "probe"]

TIMEOUT_S = 15.0


class Sender(Protocol):
    def deliver(self, records: Sequence[Mapping[str, Any]]) -> None: ...


def open_sender(
    target: ForwardTarget,
    *,
    token: str | None,
    auth_scheme: str,
    ca_bundle: Path | None,
    timeout: float = TIMEOUT_S,
) -> Sender:
    context = client_context(ca_bundle) if target.uses_tls else None
    if target.is_https:
        assert context is not None
        return HttpsSender(target, context, token, auth_scheme, timeout)
    return SyslogSender(target, context, timeout)


def probe(target: ForwardTarget, ca_bundle: Path | None, timeout: float = 5.0) -> None:
    """Connect (and shake hands over TLS) without sending anything: what `check-config`
    can learn about a collector without writing to it."""
    context = client_context(ca_bundle) if target.uses_tls else None
    with named_failures(target), connect(target, context, timeout):
        pass
