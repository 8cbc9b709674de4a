"""`entrasync demo`, end to end: emulator, store, reports, `plan`, one cycle, `audit verify`.

The runner knows nothing about the terminal: it tells a `Reporter` when each step begins and
ends and returns a `DemoResult` with every number the summary shows, each read back from the
store (not predicted from the scenario), so what the admin sees is what the store holds.
"""

from __future__ import annotations

import json
import secrets
import socket
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import func, select

from entrasync.config import Config, load_config
from entrasync.demo import scenario as story
from entrasync.domain.actions import ActionKind
from entrasync.domain.planning import PlannedAction
from entrasync.domain.reports import parse_reports
from entrasync.errors import InputError
from entrasync.graph import GraphClient, settings_from_config
from entrasync.services.audit_review import AuditFilter, records, verify
from entrasync.services.ingest import IngestSummary, ingest_reports
from entrasync.sim import EntraEmulator
from entrasync.store.account import license_status
from entrasync.store.db import Store
from entrasync.store.schema import AuditRow, UserRow
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


STEPS = 10  # steps reported by demo_world (3) and run_demo (7), for a progress bar


@dataclass(frozen=True)
class Snapshot:
    used: int
    purchased: int
    pending: int
    tracked: int
    untracked: int
    audit_records: int

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Outcome:
    """One line of the summary: how many people an action touched and the licenses it freed."""

    people: int
    licenses_freed: int


@dataclass
class DemoResult:
    directory: Path
    config_path: Path
    store_path: Path
    store_url: str
    emulator_url: str
    tenant_people: int
    before: Snapshot
    after: Snapshot
    plan_actions: int
    plan_licenses_freed: int
    run_id: str
    run_status: str
    outcomes: dict[str, Outcome]
    pending_waiting: list[str]  # UPNs still in the queue after the cycle
    audit_written: dict[str, int]  # by action, records of the cycle's run
    audit_verified: int
    audit_problem: str | None
    example_rename: tuple[str, str] | None  # (old upn, new upn) of a merged person
    seconds: float = 0.0

    @property
    def licenses_freed(self) -> int:
        return self.before.used - self.after.used

    def as_dict(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory),
            "config": str(self.config_path),
            "store": str(self.store_path),
            "store_url": self.store_url,
            "emulator_url": self.emulator_url,
            "tenant_people": self.tenant_people,
            "before": self.before.as_dict(),
            "after": self.after.as_dict(),
            "licenses_freed": self.licenses_freed,
            "plan": {"actions": self.plan_actions, "licenses_freed": self.plan_licenses_freed},
            "run": {"id": self.run_id, "status": self.run_status},
            "outcomes": {k: dict(v.__dict__) for k, v in self.outcomes.items()},
            "pending_waiting": self.pending_waiting,
            "audit": {
                "written": self.audit_written,
                "verified": self.audit_verified,
                "ok": self.audit_problem is None,
                "problem": self.audit_problem,
            },
            "example_rename": list(self.example_rename) if self.example_rename else None,
            "seconds": round(self.seconds, 2),
        }


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


def write_config(
    path: Path,
    emu: EntraEmulator,
    scene: story.Scenario,
    secret_file: Path,
    store_url: str,
    interval: str,
) -> None:
    path.write_text(
        f"""# Written by `entrasync demo` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.
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
""",
        encoding="utf-8",
    )


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

    def graph_factory(self, config: Config) -> Callable[[], GraphClient]:
        settings = settings_from_config(config.entra, {"ENTRASYNC_CLIENT_SECRET": self.secret})
        return lambda: GraphClient(settings)

    def sync(self, now: datetime, *, dry_run: bool = False) -> CycleResult:
        config = self.config()
        return run_cycle(self.store, config, self.graph_factory(config), now, dry_run=dry_run)

    def ingest(self, lines: list[str], now: datetime, source: str) -> IngestSummary:
        return ingest_reports(self.store, self.config(), parse_reports(lines), now, source)


def snapshot(store: Store, now: datetime) -> Snapshot:
    with store.reading() as session:
        status = license_status(session, now)
        tracking = dict(
            session.execute(
                select(UserRow.tracking, func.count(UserRow.id))
                .where(UserRow.merged_into_id.is_(None))
                .group_by(UserRow.tracking)
            ).all()
        )
        audit_records = int(session.scalar(select(func.count(AuditRow.seq))) or 0)
    return Snapshot(
        status.used,
        status.purchased,
        status.pending,
        int(tracking.get("tracked", 0)),
        int(tracking.get("untracked", 0)),
        audit_records,
    )


def _pending_ids(store: Store) -> set[int]:
    with store.reading() as session:
        return set(
            session.scalars(
                select(UserRow.id).where(
                    UserRow.status == "pending", UserRow.merged_into_id.is_(None)
                )
            )
        )


def _upns_of(store: Store, user_ids: set[int]) -> list[str]:
    from entrasync.store.schema import IdentifierRow

    with store.reading() as session:
        return sorted(
            session.scalars(
                select(IdentifierRow.value).where(
                    IdentifierRow.user_id.in_(sorted(user_ids)), IdentifierRow.kind == "upn"
                )
            )
        )


def _outcomes(
    result: CycleResult, pending_before: set[int], resolved: dict[int, str]
) -> dict[str, Outcome]:
    def applied(actions: list[PlannedAction]) -> list[PlannedAction]:
        # A cycle applies every planned action of a kind it did not hold.
        return [] if actions and actions[0].kind.value in result.held else actions

    the_plan = result.plan
    merges = applied(the_plan.of_kind(ActionKind.MERGE))
    duplicate = [a for a in merges if not set(a.source_user_ids) & pending_before]
    from_queue = [a for a in merges if set(a.source_user_ids) & pending_before]

    def outcome(actions: list[PlannedAction], people: int | None = None) -> Outcome:
        count = len(actions) if people is None else people
        return Outcome(count, sum(a.licenses_freed for a in actions))

    return {
        "merged": outcome(duplicate),
        "pending_resolved": outcome(from_queue, len(resolved)),
        "untracked": outcome(applied(the_plan.of_kind(ActionKind.UNTRACK))),
        "purged": outcome(applied(the_plan.of_kind(ActionKind.PURGE))),
        "preregistered": outcome(applied(the_plan.of_kind(ActionKind.PREREGISTER))),
    }


def _resolved(store: Store, pending_before: set[int]) -> dict[int, str]:
    """Pending users the cycle took out of the queue, and how."""
    out: dict[int, str] = {}
    with store.reading() as session:
        for user in session.scalars(select(UserRow).where(UserRow.id.in_(sorted(pending_before)))):
            if user.merged_into_id is not None:
                out[user.id] = "merged"
            elif user.status != "pending":
                out[user.id] = "untracked" if user.tracking == "untracked" else "approved"
    return out


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
        secret_file = directory / "client-secret"
        secret_file.write_text(secret + "\n", encoding="utf-8")
        secret_file.chmod(0o600)
        store_path = directory / "store.db"
        store_url = f"sqlite:///{store_path}"
        config_path = directory / "entrasync.toml"
        write_config(config_path, emu, scene, secret_file, store_url, interval)
        _, revision = Store(store_url, check_schema=False).upgrade()
        demo = Demo(directory, emu, Store(store_url), config_path, scene, secret)
        steps.end(f"SQLite store {store_path} (schema {revision}), config {config_path}")
    except BaseException:
        emu.stop()
        raise
    try:
        yield demo
    finally:
        demo.store.engine.dispose()
        emu.stop()


def run_demo(
    demo: Demo,
    reporter: Reporter | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> DemoResult:
    """Day 1, day 2, `plan`, one cycle, `audit verify`: the numbers of the summary."""
    steps: Reporter = reporter or QuietReporter()
    started = time.monotonic()
    scene = demo.scene
    shape = scene.shape
    today = now()
    yesterday = today - timedelta(days=1)

    steps.begin("Day 1: agents report")
    day_one = demo.ingest(
        story.day_one_reports(scene, yesterday.replace(hour=9, minute=0, second=0)),
        yesterday,
        "demo day 1",
    )
    steps.end(
        f"day 1: {day_one.reports} agents reported {day_one.rows_stored} activity rows "
        f"({scene.purchased} licenses purchased, pending mode on)"
    )
    steps.begin("Day 1: first sync with Entra")
    first = demo.sync(yesterday + timedelta(minutes=5))
    steps.end(
        f"day 1: first sync linked {first.applied.get('link', 0)} store records to their "
        f"Entra users ({first.graph_requests} Graph requests)"
    )

    steps.begin("Day 2: changes in Entra")
    story.migrate(scene)
    steps.end(
        f"day 2 in Entra: {shape.renamed} people renamed {story.OLD_DOMAIN} -> "
        f"{story.NEW_DOMAIN}; {shape.dnt + shape.nested} added to Do Not Track "
        f"({shape.nested} through the nested group); {shape.delete} added to Delete "
        f"({shape.delete_unseen} never logged in); {shape.new_hires} new hires"
    )
    steps.begin("Day 2: agents report")
    morning = today - timedelta(hours=1)
    dupes = demo.ingest(story.duplicate_reports(scene, morning), morning, "demo day 2")
    hires = demo.ingest(story.new_hire_reports(scene, morning), morning, "demo day 2 new hires")
    steps.end(
        f"day 2: the renamed people's agents report the new UPN under NEWCO\\: "
        f"{dupes.users_created} duplicate records, {dupes.users_created - dupes.pending} "
        f"took a license, {dupes.pending} wait in the pending queue; "
        f"{hires.pending} new hires wait there too"
    )

    before = snapshot(demo.store, now())
    pending_before = _pending_ids(demo.store)

    steps.begin("entrasync plan")
    planned = demo.sync(now(), dry_run=True)
    steps.plan(planned)
    steps.end(
        f"plan: {len(planned.plan.actions)} actions, "
        f"{sum(a.licenses_freed for a in planned.plan.actions)} licenses would be freed"
    )

    steps.begin("entrasync sync")
    cycle = demo.sync(now())
    applied = ", ".join(f"{n} {k}" for k, n in sorted(cycle.applied.items())) or "nothing"
    steps.end(f"sync: run {cycle.run_id} {cycle.status}: applied {applied}")

    after = snapshot(demo.store, now())
    resolved = _resolved(demo.store, pending_before)
    waiting = _upns_of(demo.store, _pending_ids(demo.store))

    steps.begin("entrasync audit verify")
    checked = verify(demo.store)
    written = Counter(r["action"] for r in records(demo.store, AuditFilter(run_id=cycle.run_id)))
    problem = (
        None if checked.problem is None else f"{checked.problem.seq}: {checked.problem.problem}"
    )
    steps.end(
        f"audit verify: {checked.records} records, chain "
        + ("intact" if problem is None else f"BROKEN at {problem}")
    )

    merged = _merged_objects(demo.store)
    example = next(
        ((p.upn, story.new_upn(p)) for p in scene.renamed if p.object_id in merged), None
    )

    return DemoResult(
        directory=demo.directory,
        config_path=demo.config_path,
        store_path=demo.directory / "store.db",
        store_url=demo.store.url,
        emulator_url=demo.emu.base_url,
        tenant_people=len(scene.tenant.users),
        before=before,
        after=after,
        plan_actions=len(planned.plan.actions),
        plan_licenses_freed=sum(a.licenses_freed for a in planned.plan.actions),
        run_id=cycle.run_id,
        run_status=cycle.status,
        outcomes=_outcomes(cycle, pending_before, resolved),
        pending_waiting=waiting,
        audit_written=dict(sorted(written.items())),
        audit_verified=checked.records,
        audit_problem=problem,
        example_rename=example,
        seconds=time.monotonic() - started,
    )


def _merged_objects(store: Store) -> set[str]:
    """Entra objects whose record absorbed another one (a merge survivor)."""
    with store.reading() as session:
        survivors = select(UserRow.merged_into_id).where(UserRow.merged_into_id.is_not(None))
        return set(
            session.scalars(
                select(UserRow.entra_object_id).where(
                    UserRow.id.in_(survivors), UserRow.entra_object_id.is_not(None)
                )
            )
        )
