"""Where audit records leave for an outside collector (`audit.forward`): the one place that
opens connections to a SIEM. `open_sender(settings)` gives a `Sender` whose `deliver(records)`
returns only when the collector has taken every record, and raises `CollectorUnavailable`
(try again later) or `CollectorRefused` (the configuration must change) otherwise."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from entrasync.domain.forwarding import ForwardTarget
from entrasync.errors import CollectorRefused, CollectorUnavailable
from entrasync.forward._https import HttpsSender
from entrasync.forward._syslog import SyslogSender
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
    try:
        with socket.create_connection((target.host, target.port), timeout=timeout) as raw:
            if context is not None:
                context.wrap_socket(raw, server_hostname=target.host).close()
    except ssl.SSLCertVerificationError as exc:
        raise CollectorRefused(
            f"{target.display}: certificate not trusted ({exc.verify_message}): "
            "check audit.forward_ca_bundle"
        ) from None
    except (OSError, ssl.SSLError) as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
        raise CollectorUnavailable(f"{target.display}: {reason}") from None
