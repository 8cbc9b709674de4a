"""``GET /healthz`` and ``GET /metrics`` on ``daemon.listen`` (stdlib HTTP server, one thread
per request, no store access in a request: handlers only read the daemon's snapshot).

Health rule: healthy while the last successful cycle is at most three intervals old. Before
the first success the reference is the daemon's start, so a fresh daemon is healthy for three
intervals (``status: starting``). A standby judges by the store's last successful run — the
leader's — so every instance of a failing deployment reports it.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from entrasync.config import parse_listen as config_parse_listen
from entrasync.errors import ConfigError, EntrasyncError

STALE_INTERVALS = 3


@dataclass(frozen=True)
class Verdict:
    healthy: bool
    status: str  # ok | starting | failing | stale
    reason: str


def judge(
    now: datetime,
    interval: timedelta,
    started_at: datetime,
    last_success: datetime | None,
    consecutive_failures: int,
) -> Verdict:
    limit = interval * STALE_INTERVALS
    if last_success is None:
        if now - started_at <= limit:
            return Verdict(True, "starting", "no successful cycle yet")
        return Verdict(
            False, "stale", f"no successful cycle in the {_human(now - started_at)} since start"
        )
    age = now - last_success
    if age > limit:
        return Verdict(
            False,
            "stale",
            f"last successful cycle {_human(age)} ago (limit {STALE_INTERVALS} intervals = "
            f"{_human(limit)})",
        )
    if consecutive_failures:
        return Verdict(
            True, "failing", f"{consecutive_failures} failed cycles since the last success"
        )
    return Verdict(True, "ok", "last cycle succeeded")


def _human(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"


def parse_listen(listen: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for IPv6) → (host, port); the config's rule, as a
    ConfigError naming ``daemon.listen``."""
    try:
        return config_parse_listen(listen)
    except ValueError as exc:
        raise ConfigError(f"daemon.listen: {exc}") from None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    health: Callable[[], tuple[int, dict[str, Any]]]
    metrics: Callable[[], tuple[bytes, str]]


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "entrasync"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return None  # scrapes every few seconds would drown the log

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        try:
            if path in ("/healthz", "/health"):
                code, verdict = self.server.health()
                self._send(code, json.dumps(verdict).encode(), "application/json")
            elif path == "/metrics":
                payload, content_type = self.server.metrics()
                self._send(HTTPStatus.OK, payload, content_type)
            else:
                self._send(HTTPStatus.NOT_FOUND, b'{"error": "not found"}', "application/json")
        except Exception as exc:  # never let a request kill the server thread's loop
            body = json.dumps({"status": "error", "error": type(exc).__name__}).encode()
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, body, "application/json")

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)


class HealthServer:
    def __init__(
        self,
        listen: str,
        health: Callable[[], tuple[int, dict[str, Any]]],
        metrics: Callable[[], tuple[bytes, str]],
    ) -> None:
        host, port = parse_listen(listen)
        try:
            server_class = _Server6 if ":" in host else _Server
            server = server_class((host, port), _Handler, bind_and_activate=False)
            server.allow_reuse_address = True
            server.server_bind()
            server.server_activate()
        except OSError as exc:
            # Not a ConfigError (exit 78 stops systemd's restarts): the port may free up.
            raise EntrasyncError(
                f"daemon.listen: cannot listen on {listen}: {exc.strerror}"
            ) from None
        server.health = health
        server.metrics = metrics
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="health", daemon=True
        )

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else str(host)
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() waits forever for a loop never started
            self._server.shutdown()
            self._thread.join(timeout=2)
        self._server.server_close()
