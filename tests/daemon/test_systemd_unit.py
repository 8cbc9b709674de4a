"""The systemd unit's restart logic: a configuration error leaves the unit failed, a store that
is down is retried for as long as it takes.

Three checks, none needing a running systemd:

* the unit is parsed and systemd's restart rule is applied to every exit status each start
  command can end with (systemd.service(5), systemd 252: `Restart=on-failure` restarts on any
  unclean exit of the main process *or* of an `ExecStartPre=`/`ExecStartPost=` command, and
  `RestartPreventExitStatus=` "has no effect on processes configured via ExecStartPre=, …, but
  only on the main service process");
* `entrasync run --upgrade`, the unit's `ExecStart=`, really ends with those statuses (78 for a
  broken config, without touching the store; 69 while the store is down) and runs the daemon
  otherwise;
* `systemd-analyze verify` accepts the unit without a warning (where it is installed; the
  program's path is rewritten to this checkout's, since /opt/entrasync does not exist here).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from daemonworld import SECRET, DaemonWorld, entrypoint, free_port

from entrasync.errors import ExitCode
from entrasync.store.db import Store

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "entrasync.service"
INSTALLED = "/opt/entrasync/bin/entrasync"
START_COMMANDS = ("ExecCondition", "ExecStartPre", "ExecStart", "ExecStartPost")
# What every entrasync command may exit with (DESIGN.md); signals are restarted by on-failure.
ENTRASYNC_STATUSES = frozenset(int(code) for code in ExitCode if code != ExitCode.INTERRUPTED)
# The policy docs/systemd.md promises: what does not fix itself is not restarted.
NEVER_RESTARTED = frozenset({ExitCode.OK, ExitCode.USAGE, ExitCode.CONFIG})


@dataclass(frozen=True)
class Line:
    section: str
    key: str
    value: str


def parse_unit(text: str) -> list[Line]:
    """A unit file's assignments in order (a key may repeat, unlike in an INI file)."""
    lines: list[Line] = []
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        lines.append(Line(section, key.strip(), value.strip()))
    return lines


def values(unit: list[Line], section: str, key: str) -> list[str]:
    """systemd's list semantics: assignments accumulate; an empty one resets the list."""
    found: list[str] = []
    for line in unit:
        if line.section == section and line.key == key:
            found = [] if not line.value else [*found, line.value]
    return found


def single(unit: list[Line], section: str, key: str) -> str | None:
    found = values(unit, section, key)
    return found[-1] if found else None


def prevented(unit: list[Line]) -> set[int]:
    return {
        int(v)
        for value in values(unit, "Service", "RestartPreventExitStatus")
        for v in value.split()
    }


def restarts(unit: list[Line], key: str, command: str, status: int) -> bool | None:
    """Whether systemd restarts the unit after `command` (of `key`) exits with `status`;
    None when that exit does not stop the start (status 0 of a command before the main
    process, or any status of a `-` command, which systemd ignores)."""
    ignored = command.startswith("-") or (key != "ExecStart" and status == 0)
    if ignored:
        return None
    assert single(unit, "Service", "Restart") == "on-failure"
    if status == 0:
        return False  # the main process exited cleanly (after SIGTERM)
    return not (key == "ExecStart" and status in prevented(unit))


def start_commands(unit: list[Line]) -> list[tuple[str, str]]:
    return [(k, c) for k in START_COMMANDS for c in values(unit, "Service", k)]


def test_every_exit_status_of_every_start_command_is_restarted_or_not_as_documented() -> None:
    unit = parse_unit(UNIT.read_text(encoding="utf-8"))
    commands = start_commands(unit)
    assert commands, "the unit starts nothing"
    for key, command in commands:
        assert command.lstrip("-@:+!").startswith(INSTALLED), command
        for status in ENTRASYNC_STATUSES:
            decision = restarts(unit, key, command, status)
            if decision is None:
                continue
            expected = status not in NEVER_RESTARTED
            assert decision == expected, (
                f"{key}={command}: exit {status} is {'restarted' if decision else 'not restarted'}"
                f", docs/systemd.md says it is {'restarted' if expected else 'not restarted'}"
            )


def test_the_restart_logic_of_the_unit_as_it_was_is_caught() -> None:
    """The check above fails on the unit as shipped before: `db upgrade` in ExecStartPre= exits
    78 for a broken config, and systemd restarts that every RestartSec, forever."""
    old = UNIT.read_text(encoding="utf-8").replace(
        f"ExecStart={INSTALLED} run --upgrade",
        f"ExecStartPre={INSTALLED} db upgrade\nExecStart={INSTALLED} run",
    )
    unit = parse_unit(old)
    assert ("ExecStartPre", f"{INSTALLED} db upgrade") in start_commands(unit)
    assert restarts(unit, "ExecStartPre", f"{INSTALLED} db upgrade", ExitCode.CONFIG) is True
    assert restarts(unit, "ExecStart", f"{INSTALLED} run", ExitCode.CONFIG) is False


def test_the_unit_waits_for_a_store_that_is_down_and_runs_the_migration_itself() -> None:
    unit = parse_unit(UNIT.read_text(encoding="utf-8"))
    assert values(unit, "Service", "ExecStart") == [f"{INSTALLED} run --upgrade"]
    assert values(unit, "Service", "ExecStartPre") == []
    assert single(unit, "Service", "Type") == "notify"
    assert single(unit, "Unit", "StartLimitIntervalSec") == "0"  # no start limit: retry forever
    assert restarts(unit, "ExecStart", f"{INSTALLED} run --upgrade", ExitCode.UNAVAILABLE)
    assert prevented(unit) == {int(ExitCode.USAGE), int(ExitCode.CONFIG)}


def _run_upgrade(config: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*entrypoint(), "--config", str(config), "run", "--upgrade"],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={"ENTRASYNC_CLIENT_SECRET": SECRET, "PATH": "/usr/bin:/bin"},
    )


def test_run_upgrade_exits_78_for_a_broken_config_without_touching_the_store(
    sqlite_world: DaemonWorld, tmp_path: Path
) -> None:
    store_file = tmp_path / "never" / "store.db"
    config = tmp_path / "broken.toml"
    config.write_text(
        sqlite_world.config_path.read_text(encoding="utf-8")
        .replace(sqlite_world.store_url, f"sqlite:///{store_file}")
        .replace('interval = "2s"', 'interval = "soon"'),
        encoding="utf-8",
    )
    result = _run_upgrade(config)
    assert result.returncode == ExitCode.CONFIG, result.stderr
    assert "schedule.interval" in result.stderr
    assert "Traceback" not in result.stderr
    assert not store_file.exists()


def test_run_upgrade_exits_69_while_the_store_is_down(
    sqlite_world: DaemonWorld, tmp_path: Path
) -> None:
    down = f"postgresql+psycopg://entrasync@127.0.0.1:{free_port()}/entrasync?connect_timeout=3"
    config = tmp_path / "down.toml"
    config.write_text(
        sqlite_world.config_path.read_text(encoding="utf-8").replace(sqlite_world.store_url, down),
        encoding="utf-8",
    )
    result = _run_upgrade(config)
    assert result.returncode == ExitCode.UNAVAILABLE, result.stderr
    assert "Traceback" not in result.stderr


def test_run_upgrade_migrates_a_new_store_then_runs_the_daemon(
    sqlite_world: DaemonWorld, tmp_path: Path
) -> None:
    fresh = f"sqlite:///{tmp_path / 'fresh' / 'store.db'}"
    config = tmp_path / "fresh.toml"
    config.write_text(
        sqlite_world.config_path.read_text(encoding="utf-8").replace(sqlite_world.store_url, fresh),
        encoding="utf-8",
    )
    daemon = sqlite_world.start("fresh", config=config, args=("run", "--upgrade"))
    upgraded = daemon.wait_event("store schema upgraded")
    assert upgraded["before"] == "empty"
    daemon.wait_event("cycle finished")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(timeout=10) == 0
    store = Store(fresh)  # checks that the schema is current
    store.engine.dispose()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    program = entrypoint()[0]
    assert Path(program).is_absolute() and Path(program).name == "entrasync", (
        "the unit runs the installed console script; install the project (pip install -e .)"
    )
    copy = tmp_path / "entrasync.service"
    copy.write_text(UNIT.read_text(encoding="utf-8").replace(INSTALLED, program), encoding="utf-8")
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # verify exits 0 even for an unknown key or an unparsable value: any output is a finding
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == "", result.stderr
