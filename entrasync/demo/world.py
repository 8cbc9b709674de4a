"""The demo's world: the generated tenant in the Entra emulator, a SQLite store, and the
config file that joins them (what `entrasync demo --keep-running` leaves for the admin)."""

from __future__ import annotations

import json
import secrets
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from entrasync.bootstrap import GraphFactory, graph_factory, open_store
from entrasync.config import Config, load_config
from entrasync.demo import scenario as story
from entrasync.domain.reports import parse_reports
from entrasync.errors import InputError
from entrasync.services.ingest import IngestSummary, ingest_reports
from entrasync.sim import EntraEmulator
from entrasync.store.db import Store
from entrasync.sync.cycle import CycleResult, run_cycle

CLIENT_ID = "0de30de3-0000-4000-8000-00000000e5c1"


class Reporter(Protocol):
    """Told about each step as it happens (the CLI draws progress from it)."""

    def begin(self, title: str) -> None: ...

    def end(self, summary: str) -> None: ...

    def plan(self, result: CycleResult) -> None: ...


class QuietReporter:
    def begin(self, title: str) -> None:
        pass

    def end(self, summary: str) -> None:
        pass

    def plan(self, result: CycleResult) -> None:
        pass


def prepare_directory(directory: Path | None) -> Path:
    """A new temporary directory, or the given one if it holds no demo store yet."""
    if directory is None:
        return Path(tempfile.mkdtemp(prefix="entrasync-demo-"))
    directory = directory.resolve()
    if (directory / "store.db").exists() or (directory / "entrasync.toml").exists():
        raise InputError(f"{directory} already holds a demo store: choose an empty directory")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _q(value: object) -> str:
    return json.dumps(str(value))  # a TOML basic string


def _connection_sections(
    emu: EntraEmulator, scene: story.Scenario, secret_file: Path, store_url: str
) -> str:
    return f"""# Written by `entrasync demo` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.
# The Entra tenant below is the built-in emulator: it runs only while the demo runs
# (`entrasync demo --keep-running`). Commands that only read the store work without it.

[entra]
tenant_id = {_q(emu.tenant_id)}
client_id = {_q(CLIENT_ID)}
client_secret_file = {_q(secret_file)}
authority_host = {_q(emu.authority_host)}
graph_url = {_q(emu.graph_url)}
ca_bundle = {_q(emu.ca_file)}

[groups]
dnt = [{_q(scene.dnt_group)}]        # "Do Not Track"; "Do Not Track - contractors" is nested
delete = [{_q(scene.delete_group)}]
nested = true

[store]
url = {_q(store_url)}
"""


def _policy_sections(scene: story.Scenario, interval: str) -> str:
    return f"""
[account]
purchased_licenses = {scene.purchased}
plan = "paid"
pending_mode = true

[schedule]
interval = {_q(interval)}

[daemon]
listen = "127.0.0.1:{free_port()}"

[safety]
purge_delay = "0s"       # demo only: production default is 24h, time to undo a mistake
max_purges = "5%"
max_untracks = "10%"
max_retracks = "10%"
max_merges = "20%"       # a domain migration merges many records in one cycle

[merge]
enabled = true
agent_merge = "all"
domain_map = {{ "oldco.com" = "newco.com" }}
netbios_map = {{ "OLDCO" = "NEWCO" }}
"""


def write_config(
    path: Path,
    emu: EntraEmulator,
    scene: story.Scenario,
    secret_file: Path,
    store_url: str,
    interval: str,
) -> None:
    text = _connection_sections(emu, scene, secret_file, store_url)
    path.write_text(text + _policy_sections(scene, interval), encoding="utf-8")


@dataclass
class Demo:
    """A running demo world: the emulator, the store and the config that joins them."""

    directory: Path
    emu: EntraEmulator
    store: Store
    config_path: Path
    scene: story.Scenario
    secret: str

    def config(self) -> Config:
        return load_config(self.config_path)

    def graph_factory(self, config: Config) -> GraphFactory:
        return graph_factory(config, {"ENTRASYNC_CLIENT_SECRET": self.secret})

    def sync(self, now: datetime, *, dry_run: bool = False) -> CycleResult:
        config = self.config()
        return run_cycle(self.store, config, self.graph_factory(config), now, dry_run=dry_run)

    def ingest(self, lines: list[str], now: datetime, source: str) -> IngestSummary:
        return ingest_reports(self.store, self.config(), parse_reports(lines), now, source)


def _create_store(
    directory: Path, emu: EntraEmulator, scene: story.Scenario, secret: str, interval: str
) -> tuple[Demo, str]:
    """Write the secret and the config, migrate the store; returns the demo and the schema
    revision."""
    secret_file = directory / "client-secret"
    secret_file.write_text(secret + "\n", encoding="utf-8")
    secret_file.chmod(0o600)
    store_url = f"sqlite:///{directory / 'store.db'}"
    config_path = directory / "entrasync.toml"
    write_config(config_path, emu, scene, secret_file, store_url, interval)
    config = load_config(config_path)
    migrating = open_store(config, check_schema=False)
    try:
        _, revision = migrating.upgrade()
    finally:
        migrating.engine.dispose()
    return Demo(directory, emu, open_store(config), config_path, scene, secret), revision


@contextmanager
def demo_world(
    directory: Path,
    shape: story.Shape,
    reporter: Reporter | None = None,
    *,
    seed: int = 7,
    interval: str = "10s",
) -> Iterator[Demo]:
    """Generate the tenant, start the emulator with it, create the store and the config file
    that joins them. The emulator's CA certificate stays in `directory` (the config points to
    it); the emulator stops when the block ends."""
    steps: Reporter = reporter or QuietReporter()
    steps.begin("Generating the tenant")
    scene = story.build(shape, seed)
    steps.end(
        f"tenant: {len(scene.people)} people in Entra ({shape.users} at contoso.com and "
        f"fabrikam.com, {shape.renamed} at {story.OLD_DOMAIN}); groups Do Not Track "
        "(with nested group 'Do Not Track - contractors') and Delete"
    )
    steps.begin("Starting the Entra emulator")
    secret = secrets.token_urlsafe(24)
    (directory / "emulator").mkdir(exist_ok=True)
    emu = EntraEmulator(scene.tenant, workdir=directory / "emulator").start()
    try:
        emu.register_app(CLIENT_ID, secret=secret)
        steps.end(f"Entra emulator at {emu.base_url} (HTTPS; the app signs in with a secret)")
        steps.begin("Creating the store")
        demo, revision = _create_store(directory, emu, scene, secret, interval)
        steps.end(
            f"SQLite store {directory / 'store.db'} (schema {revision}), config {demo.config_path}"
        )
    except BaseException:
        emu.stop()
        raise
    try:
        yield demo
    finally:
        demo.store.engine.dispose()
        emu.stop()
