"""`entrasync demo`: a simulated tenant and a throw-away store, end to end, with a before/after
summary; `--keep-running` leaves the emulator up and runs the daemon against it."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from entrasync.cli.output import console, print_json, progress
from entrasync.cli.sync_cmd import print_plan
from entrasync.demo import Demo, DemoResult, Shape, demo_world, run_demo
from entrasync.demo.runner import STEPS, prepare_directory
from entrasync.domain.durations import parse_duration
from entrasync.errors import InputError
from entrasync.sync.cycle import CycleResult


class _Steps:
    """Step lines that stay, under a progress bar that goes (drawn on a terminal only)."""

    def __init__(self, bar: Progress, out: Console, show_plan: bool) -> None:
        self.bar = bar
        self.out = out
        self.show_plan = show_plan
        self.task = bar.add_task("starting", total=STEPS)
        self.started = time.monotonic()

    def begin(self, title: str) -> None:
        self.started = time.monotonic()
        self.bar.update(self.task, description=title)

    def end(self, summary: str) -> None:
        elapsed = time.monotonic() - self.started
        self.out.print(f"✓ {summary} [dim]({elapsed:.1f} s)[/dim]", highlight=False)
        self.bar.advance(self.task)

    def plan(self, result: CycleResult) -> None:
        if not self.show_plan:
            return
        self.out.print("\n[bold]$ entrasync plan[/bold]")
        print_plan(result, "next cycle would take")
        self.out.print()


def _program() -> str:
    """How to call entrasync from the user's shell: `entrasync` when it is on PATH, else the
    path of the one next to this Python (e.g. `.venv/bin/entrasync` after `make demo`)."""
    if shutil.which("entrasync"):
        return "entrasync"
    beside = Path(sys.executable).parent / "entrasync"
    if beside.exists():
        try:
            return str(beside.relative_to(Path.cwd()))
        except ValueError:
            return str(beside)
    return f"{sys.executable} -m entrasync"


# What the cycle did, by outcome: (row title, DemoResult.outcomes key, why).
_OUTCOMES = [
    ("merged (UPN change)", "merged", "renamed: two records, one person"),
    ("pending resolved", "pending_resolved", "renamed, queued: merged, no approval"),
    ("untracked", "untracked", "DNT (+nested) / Delete: history kept"),
    ("purged", "purged", "Delete group: history deleted"),
    ("pre-registered Untracked", "preregistered", "Delete group, never logged in"),
]


def _table(*columns: str) -> Table:
    """A table whose first column holds the row titles; figures right-aligned, `why` not."""
    table = Table(show_header=True, header_style="bold")
    table.add_column("")
    for column in columns:
        table.add_column(column, justify="left" if column == "why" else "right")
    return table


def _summary(result: DemoResult, out: Console) -> None:
    b, a = result.before, result.after
    out.print("\n[bold]Before and after the cycle[/bold]")
    table = _table("before", "after")
    table.add_row("licenses used / purchased", f"{b.used}/{b.purchased}", f"{a.used}/{a.purchased}")
    table.add_row("waiting in the pending queue", str(b.pending), str(a.pending))
    table.add_row(
        "users tracked / untracked", f"{b.tracked}/{b.untracked}", f"{a.tracked}/{a.untracked}"
    )
    table.add_row("audit records", str(b.audit_records), str(a.audit_records))
    out.print(table)

    out.print(f"\n[bold]What the cycle did[/bold] (run {result.run_id}, {result.run_status})")
    did = _table("users", "licenses freed", "why")
    for title, key, why in _OUTCOMES:
        outcome = result.outcomes[key]
        did.add_row(title, str(outcome.people), str(outcome.licenses_freed), why)
    did.add_row("[bold]total[/bold]", "", f"[bold]{result.licenses_freed}[/bold]", "")
    out.print(did)
    _audit_and_pending(result, out)


def _audit_and_pending(result: DemoResult, out: Console) -> None:
    written = ", ".join(f"{n} {action}" for action, n in result.audit_written.items())
    out.print(f"\nAudit: the cycle wrote {sum(result.audit_written.values())} records ({written}).")
    if result.audit_problem is None:
        out.print(f"audit verify: hash chain intact, {result.audit_verified} records verified.")
    else:
        out.print(f"audit verify: [bold red]BROKEN[/bold red] at record {result.audit_problem}")
    if result.pending_waiting:
        free = result.after.purchased - result.after.used
        out.print(
            f"\n{len(result.pending_waiting)} new hires still wait in the pending queue "
            f"({', '.join(result.pending_waiting)}); {free} licenses are free now, so an "
            "admin can approve them."
        )


def _explore(result: DemoResult, out: Console, keep_running: bool) -> None:
    prog = f"{_program()} --config {shlex.quote(str(result.config_path))}"
    renamed = result.example_rename
    hire = result.pending_waiting[0] if result.pending_waiting else None
    lines = [
        ("status", "licenses, pending queue, last run"),
        ("users list --tracking untracked", "who the cycle untracked"),
    ]
    if renamed:
        lines.append((f"users show {renamed[0]}", f"merged: both UPNs ({renamed[1]}), one license"))
    lines += [("pending list", "the new hires waiting for a license")]
    if hire:
        lines.append((f"pending approve {hire}", "give one of them a license (audited)"))
    lines += [
        ("audit list --action 'user.*'", "what happened to whom, and why"),
        ("audit export --format csv", "the whole log for a spreadsheet"),
        ("audit verify", "the hash chain is intact"),
    ]
    out.print("\n[bold]Explore the store[/bold]")
    for command, what in lines:
        out.print(f"  {prog} {command}", markup=False, highlight=False)
        out.print(f"      [dim]{what}[/dim]")
    if not keep_running:
        out.print(
            "\nThe emulated Entra tenant stopped with the demo: commands that read the store "
            "work; plan, sync and check-config retry for about half a minute, then fail with "
            "exit 69 (Graph unreachable), and run would log failing cycles. For those, run "
            "`entrasync demo --keep-running`."
        )
    out.print(f"\nstore:  {result.store_path}\nconfig: {result.config_path}")


def _has_daemon() -> bool:
    from entrasync.cli.app import app

    return any(command.name == "run" for command in app.registered_commands)


def _cycle_loop(demo: Demo, interval: float, out: Console) -> int:
    """Without the daemon: a cycle every interval until Ctrl-C."""
    out.print(
        f"\n[bold]Keeping the emulator up[/bold] at {demo.emu.base_url}: a sync cycle every "
        f"{interval:g} s. Stop with Ctrl-C.",
        highlight=False,
    )
    try:
        while True:
            time.sleep(interval)
            result = demo.sync(datetime.now(UTC))
            applied = ", ".join(f"{n} {k}" for k, n in sorted(result.applied.items()))
            out.print(
                f"{datetime.now(UTC):%H:%M:%S} run {result.run_id} {result.status}: "
                f"{applied or 'nothing to do'}",
                highlight=False,
            )
    except KeyboardInterrupt:
        out.print("\nstopping the emulator…")
    return 0


def _keep_running(demo: Demo, interval: float, out: Console) -> int:
    """Keep the emulator up and run the daemon (`entrasync run`) against it until Ctrl-C."""
    if not _has_daemon():
        return _cycle_loop(demo, interval, out)
    command = [sys.executable, "-m", "entrasync", "--config", str(demo.config_path), "run"]
    env = {k: v for k, v in os.environ.items() if k != "ENTRASYNC_CLIENT_SECRET"}
    prog = f"{_program()} --config {shlex.quote(str(demo.config_path))}"
    config = demo.config()
    out.print(
        f"\n[bold]Keeping the emulator up[/bold] at {demo.emu.base_url} and running the daemon "
        f"(a cycle every {interval:g} s). In another terminal:\n"
        f"  {prog} plan\n  {prog} status\n  {prog} healthcheck\n"
        f"  curl -s http://{config.daemon.listen}/metrics\n"
        "Stop with Ctrl-C.",
        highlight=False,
    )
    daemon = subprocess.Popen(command, env=env)
    try:
        while daemon.poll() is None:
            time.sleep(min(interval, 0.5))
    except KeyboardInterrupt:
        out.print("\nstopping the daemon and the emulator…")
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=config.daemon.stop_timeout.total_seconds() + 5)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
    return 0 if daemon.returncode in (0, -signal.SIGTERM) else int(daemon.returncode)


DirOpt = Annotated[
    Path | None,
    typer.Option(
        "--dir",
        help="Where to put the store and config (default: a new temporary directory).",
        file_okay=False,
    ),
]
UsersOpt = Annotated[
    int, typer.Option("--users", min=30, max=100_000, help="People in the tenant.")
]
KeepRunningOpt = Annotated[
    bool,
    typer.Option(
        "--keep-running",
        help="Afterwards keep the emulator up and run the daemon against it (Ctrl-C).",
    ),
]
IntervalOpt = Annotated[str, typer.Option("--interval", help="Cycle interval with --keep-running.")]
SummaryJsonOpt = Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")]


def demo_cmd(
    directory: DirOpt = None,
    users: UsersOpt = 300,
    keep_running: KeepRunningOpt = False,
    interval: IntervalOpt = "10s",
    as_json: SummaryJsonOpt = False,
) -> None:
    """A simulated Entra tenant and a throw-away SQLite store, end to end: a domain
    migration (oldco.com -> newco.com) creating duplicate records, Do Not Track and Delete
    groups (one nested), a full pending queue; then `plan`, one cycle and `audit verify`,
    with a before/after summary. Needs no Entra tenant and no network. The store and a
    config file stay behind so the other commands can read them.

    Example: entrasync demo --dir /tmp/entrasync-demo
    """
    try:
        cadence = parse_duration(interval)
    except ValueError as exc:
        raise InputError(f"--interval {interval!r}: {exc}") from None
    where = prepare_directory(directory)
    out = console(stderr=as_json)
    shape = Shape(users=users)
    with progress(stderr=as_json) as bar:
        steps = _Steps(bar, out, show_plan=not as_json)
        if not as_json:
            out.print(
                f"[bold]entrasync demo[/bold] — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
                f"in {where}\n"
            )
        with demo_world(where, shape, steps, interval=interval) as demo:
            result = run_demo(demo, steps)
            bar.stop()
            _show(result, out, as_json=as_json, keep_running=keep_running)
            if result.audit_problem is not None:
                raise typer.Exit(1)
            if keep_running:
                raise typer.Exit(_keep_running(demo, cadence.total_seconds(), out))


def _show(result: DemoResult, out: Console, *, as_json: bool, keep_running: bool) -> None:
    if as_json:
        print_json(result.as_dict())
        return
    _summary(result, out)
    _explore(result, out, keep_running)
    out.print(f"\n[dim]demo finished in {result.seconds:.1f} s[/dim]")
