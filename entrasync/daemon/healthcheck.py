"""`entrasync healthcheck`: ask the local daemon's ``/healthz`` (for container health checks
and monitoring scripts). Exit 0 when it answers 200, 1 otherwise (unhealthy, not running, not
answering within the timeout)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from entrasync.daemon.health import parse_listen

_ANY = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}  # noqa: S104 - mapping, not binding


def health_url(listen: str) -> str:
    host, port = parse_listen(listen)
    host = _ANY.get(host, host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/healthz"


@dataclass(frozen=True)
class Check:
    healthy: bool
    code: int | None
    body: dict[str, Any]
    problem: str | None = None

    def summary(self) -> str:
        if self.problem:
            return f"unhealthy: {self.problem}"
        b = self.body
        line = f"{'healthy' if self.healthy else 'unhealthy'}: {b.get('status')} ({b.get('role')})"
        if b.get("reason"):
            line += f", {b['reason']}"
        if b.get("last_success"):
            line += f"; last success {b['last_success']}"
        if b.get("last_error") and not self.healthy:
            line += f"; last error: {b['last_error']}"
        return line


def check(url: str, timeout: float = 5.0) -> Check:
    if not url.startswith(("http://", "https://")):
        return Check(False, None, {}, f"{url}: not an http(s) URL")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - scheme checked
            return Check(response.status == 200, response.status, _json(response.read()))
    except urllib.error.HTTPError as exc:
        return Check(False, exc.code, _json(exc.read()))
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return Check(False, None, {}, f"daemon not reachable at {url} ({reason})")


def _json(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
