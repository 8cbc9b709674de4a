"""A TCP forwarder on loopback between a daemon and its PostgreSQL server, that a test can
cut: the store "goes down" (open connections are reset, new ones are accepted and closed at
once, as a server that is restarting does) and comes back. It notes the time of every
connection attempt, so a test can count how hard a client retries.

Loopback only; every thread stops with `close()`.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


def _reset(sock: socket.socket) -> None:
    """Drop a connection as a dying server does. `shutdown` first: a bare `close` would leave
    the connection open while a pump thread is blocked reading it (the kernel keeps the socket
    for that read), and PostgreSQL would keep the session, and its locks, for good. Then
    close with SO_LINGER 0 (RST)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class TcpProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._attempts: list[float] = []
        self._up = True
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name="tcpproxy", daemon=True)
        self._thread.start()

    # --- control -------------------------------------------------------------------------

    def cut(self) -> None:
        """The store goes down: every open connection is reset, new ones are refused."""
        with self._lock:
            self._up = False
            sockets, self._open = self._open, []
        for sock in sockets:
            _reset(sock)

    def restore(self) -> None:
        with self._lock:
            self._up = True

    def attempts(self, since: float = 0.0) -> list[float]:
        """time.monotonic() of each connection attempt since `since`."""
        with self._lock:
            return [t for t in self._attempts if t >= since]

    def close(self) -> None:
        self._closed.set()
        self.cut()
        self._thread.join(timeout=5)
        self._listener.close()

    # --- forwarding ----------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._attempts.append(time.monotonic())
                up = self._up
            if not up:
                _reset(client)
                continue
            try:
                server = socket.create_connection(self._upstream, timeout=5)
            except OSError:
                _reset(client)
                continue
            client.settimeout(None)
            server.settimeout(None)
            with self._lock:
                self._open += [client, server]
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()


@contextmanager
def tcp_proxy(host: str, port: int) -> Iterator[TcpProxy]:
    proxy = TcpProxy(host, port)
    try:
        yield proxy
    finally:
        proxy.close()
