"""RFC 5424 syslog over TCP (RFC 6587) and TLS (RFC 5425), delivered at least once.

Plain syslog over a stream has no acknowledgement: bytes a collector's kernel took before the
collector died are lost without a word. So each batch is one connection, and a batch counts
as delivered only when the collector, after reading up to our end of stream (a TCP half-close,
or over TLS a close_notify), closes its side in turn, and (on Linux) our kernel holds no
unacknowledged byte. A collector
that was killed, restarted or reset the connection fails the batch instead, and the cursor
stays where it was: the batch is sent again, whole, the next time.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import os
import socket
import ssl
import sys
import termios
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from entrasync.domain.forwarding import ForwardTarget, syslog_frame
from entrasync.errors import CollectorRefused, CollectorUnavailable


class SyslogSender:
    def __init__(
        self, target: ForwardTarget, context: ssl.SSLContext | None, timeout: float
    ) -> None:
        self._target = target
        self._context = context
        self._timeout = timeout
        self._hostname = socket.gethostname()

    def deliver(self, records: Sequence[Mapping[str, Any]]) -> None:
        frames = b"".join(syslog_frame(r, self._hostname, os.getpid()) for r in records)
        with (
            named_failures(self._target),
            connect(self._target, self._context, self._timeout) as sock,
        ):
            sock.sendall(frames)
            _end_and_confirm(sock)


def connect(target: ForwardTarget, context: ssl.SSLContext | None, timeout: float) -> socket.socket:
    """A connection to the collector, TLS handshake done when `context` is given."""
    raw = socket.create_connection((target.host, target.port), timeout=timeout)
    if context is None:
        return raw
    try:
        return context.wrap_socket(raw, server_hostname=target.host)
    except BaseException:
        raw.close()
        raise


@contextlib.contextmanager
def named_failures(target: ForwardTarget) -> Iterator[None]:
    """Socket and TLS failures as `CollectorRefused` (an untrusted certificate: the
    configuration must change) or `CollectorUnavailable` (try again later)."""
    try:
        yield
    except ssl.SSLCertVerificationError as exc:
        raise CollectorRefused(
            f"{target.display}: certificate not trusted ({exc.verify_message}): "
            "check audit.forward_ca_bundle"
        ) from None
    except (OSError, ssl.SSLError) as exc:
        raise CollectorUnavailable(f"{target.display}: {_describe(exc)}") from None


def _end_and_confirm(sock: socket.socket) -> None:
    """End our side, wait for the collector to close, and check it acknowledged every byte."""
    if isinstance(sock, ssl.SSLSocket):
        # RFC 5425 section 4.4: the sender ends with a TLS close_notify. unwrap() sends it and
        # waits for the collector's answer: its own close_notify, or its closing the
        # connection, which it does only after reading up to ours.
        # Closed without a close_notify of its own: still after reading ours.
        with contextlib.suppress(ssl.SSLEOFError, ssl.SSLZeroReturnError):
            sock.unwrap()
    else:
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(4096):
            pass  # nothing the collector says matters
    unacknowledged = _unacknowledged(sock)
    if unacknowledged:
        raise ConnectionError(f"closed with {unacknowledged} bytes unacknowledged")


def _unacknowledged(sock: socket.socket) -> int:
    """Bytes (and our FIN) the peer's kernel has not acknowledged; 0 where unknown."""
    if not sys.platform.startswith("linux"):
        return 0
    buf = array.array("i", [0])
    fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, buf)  # SIOCOUTQ on a TCP socket
    return buf[0]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
