"""Real `entrasync run` processes against the Entra emulator and a real store.

`DaemonWorld` owns an emulator (in this process), a migrated store and a config file;
`Daemon` is one `python -m entrasync run` subprocess with its own free health port, its
output captured to a file so that tests can read every log line it wrote.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from entrasync.sim import EntraEmulator, Tenant
from entrasync.store.db import Store

CLIENT_ID = "0b5d7c3e-0000-4000-8000-00000000da7e"
SECRET = "Daemon~Test.Secret-Never-Logged_42"
ADMIN = "admin@example.com"


def entrypoint() -> list[str]:
    """The installed `entrasync` console script (what the Dockerfile's ENTRYPOINT and the
    systemd unit run), else the module."""
    script = Path(sys.executable).parent / "entrasync"
    return [str(script)] if script.exists() else [sys.executable, "-m", "entrasync"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(what: str, check: Callable[[], Any], timeout: float = 20.0, every: float = 0.1) -> Any:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def http_get(url: str, timeout: float = 3.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - test URL
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@dataclass
class Daemon:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def healthz(self) -> tuple[int, dict[str, Any]] | None:
        """(HTTP status, JSON) or None while it is not answering."""
        try:
            code, body = http_get(self.url + "/healthz")
        except OSError:
            return None
        return code, json.loads(body)

    def metrics(self) -> str:
        code, body = http_get(self.url + "/metrics")
        assert code == 200
        return body.decode()

    def role(self) -> str | None:
        answer = self.healthz()
        return answer[1]["role"] if answer else None

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_events(self) -> list[dict[str, Any]]:
        events = []
        for line in self.log_text().splitlines():
            line = line.strip()
            if line.startswith("{"):
                events.append(json.loads(line))
        return events

    def wait_event(self, event: str, timeout: float = 20.0) -> dict[str, Any]:
        found: dict[str, Any] = wait_for(
            f"{self.name} to log {event!r}",
            lambda: next((e for e in self.log_events() if e.get("event") == event), None),
            timeout,
        )
        return found

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float = 15.0) -> int:
        return self.proc.wait(timeout=timeout)

    def alive(self) -> bool:
        return self.proc.poll() is None


@dataclass
class DaemonWorld:
    tmp: Path
    emu: EntraEmulator
    tenant: Tenant
    store_url: str
    config_path: Path
    dnt: str
    delete: str
    daemons: list[Daemon] = field(default_factory=list)

    def store(self) -> Store:
        return Store(self.store_url)

    def write_config(self, *, interval: str = "2s", extra: str = "", port: int = 0) -> Path:
        self.config_path.write_text(
            f"""
[entra]
tenant_id = "{self.emu.tenant_id}"
client_id = "{CLIENT_ID}"
authority_host = "{self.emu.authority_host}"
graph_url = "{self.emu.graph_url}"
ca_bundle = "{self.emu.ca_file}"

[groups]
dnt = ["{self.dnt}"]
delete = ["{self.delete}"]

[store]
url = "{self.store_url}"

[account]
purchased_licenses = 100

[schedule]
interval = "{interval}"

[daemon]
listen = "127.0.0.1:{port}"
failure_alert_after = 2
max_backoff = "4s"
stop_timeout = "5s"

[notify]
admins = ["{ADMIN}"]

[safety]
purge_delay = "0s"
max_purges = 50
max_untracks = 50
max_retracks = 50
max_merges = 50

[logging]
format = "json"
{extra}
""",
            encoding="utf-8",
        )
        return self.config_path

    def start(
        self,
        name: str,
        *,
        env: dict[str, str] | None = None,
        config: Path | None = None,
        wait_healthy: bool = True,
        args: tuple[str, ...] = ("run",),
    ) -> Daemon:
        """`entrasync run` on its own free port (the config's listen port is overridden by
        writing a per-daemon copy of the config)."""
        port = free_port()
        source = (config or self.config_path).read_text(encoding="utf-8")
        own = self.tmp / f"{name}.toml"
        own.write_text(
            source.replace('listen = "127.0.0.1:0"', f'listen = "127.0.0.1:{port}"'),
            encoding="utf-8",
        )
        log_path = self.tmp / f"{name}.log"
        environment = {**os.environ, "ENTRASYNC_CLIENT_SECRET": SECRET, **(env or {})}
        environment.pop("ENTRASYNC_CRASH_AT", None)
        with log_path.open("wb") as out:
            proc = subprocess.Popen(
                [*entrypoint(), "--config", str(own), *args],
                env=environment,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        daemon = Daemon(name, proc, port, log_path)
        self.daemons.append(daemon)
        if wait_healthy:
            wait_for(f"{name} to answer /healthz", daemon.healthz, timeout=20)
        return daemon

    def daemon_config(self, daemon: Daemon) -> Path:
        return self.tmp / f"{daemon.name}.toml"

    def stop_all(self) -> None:
        for daemon in self.daemons:
            if daemon.alive():
                daemon.proc.kill()
                daemon.proc.wait(timeout=10)


def make_daemon_world(tmp_path: Path, store_url: str) -> Iterator[DaemonWorld]:
    Store(store_url, check_schema=False).upgrade()
    tenant = Tenant()
    dnt = tenant.add_group("Do Not Track")
    delete = tenant.add_group("Delete")
    with EntraEmulator(tenant) as emu:
        emu.register_app(CLIENT_ID, secret=SECRET)
        world = DaemonWorld(
            tmp_path, emu, tenant, store_url, tmp_path / "entrasync.toml", dnt, delete
        )
        world.write_config()
        try:
            yield world
        finally:
            world.stop_all()


@dataclass
class Mailbox:
    """An SMTP server on loopback (aiosmtpd) that keeps what it accepts."""

    messages: list[tuple[list[str], str]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        from email import message_from_bytes

        subject = str(message_from_bytes(envelope.content)["Subject"])
        self.messages.append((list(envelope.rcpt_tos), subject))
        return "250 Message accepted for delivery"


@contextmanager
def smtp_server() -> Iterator[tuple[int, Mailbox]]:
    from aiosmtpd.controller import Controller

    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, mailbox
    finally:
        controller.stop()
