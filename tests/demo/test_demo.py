"""`entrasync demo` end to end: what it tells the admin must be what the store it leaves holds."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from entrasync.config import load_config
from entrasync.services.audit_review import verify
from entrasync.services.users import show_user
from entrasync.store.account import license_status
from entrasync.store.db import Store
from entrasync.store.schema import AuditRow


@pytest.fixture
def store_of() -> Any:
    opened: list[Store] = []

    def open_store(config: Path) -> Store:
        store = Store(load_config(config).store.url)
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        store.engine.dispose()


def test_json_summary_is_consistent_with_the_store_left_behind(
    cli: Any, tmp_path: Path, store_of: Any
) -> None:
    result = cli("demo", "--dir", str(tmp_path / "demo"), "--json")
    assert result.code == 0, result.err
    summary = result.json()
    before, after, outcomes = summary["before"], summary["after"], summary["outcomes"]
    store = store_of(Path(summary["config"]))

    # Licenses: the store agrees with "after", and the difference is what each action freed.
    with store.reading() as session:
        now_status = license_status(session, datetime.now(UTC))
    assert (now_status.used, now_status.purchased, now_status.pending) == (
        after["used"],
        after["purchased"],
        after["pending"],
    )
    freed = sum(o["licenses_freed"] for o in outcomes.values())
    assert before["used"] - after["used"] == freed == summary["licenses_freed"] > 0
    assert summary["plan"]["licenses_freed"] == freed  # the plan predicted what the cycle did
    assert before["used"] == before["purchased"]  # the story starts with every license taken

    # Every part of the story happened.
    for kind in ("merged", "pending_resolved", "untracked", "purged", "preregistered"):
        assert outcomes[kind]["people"] > 0, kind
    assert outcomes["pending_resolved"]["licenses_freed"] == 0  # queued users hold none
    assert outcomes["untracked"]["licenses_freed"] == 0  # history kept, still counts
    assert before["pending"] - after["pending"] == outcomes["pending_resolved"]["people"]
    assert len(summary["pending_waiting"]) == after["pending"] > 0

    # Merges: one audit record per merged record, in the cycle's run.
    run_id = summary["run"]["id"]
    merged = outcomes["merged"]["people"] + outcomes["pending_resolved"]["people"]
    with store.reading() as session:
        by_action = dict(
            session.execute(
                select(AuditRow.action, func.count(AuditRow.seq))
                .where(AuditRow.run_id == run_id)
                .group_by(AuditRow.action)
            ).all()
        )
        total = session.scalar(select(func.count(AuditRow.seq)))
    assert by_action == summary["audit"]["written"]
    assert by_action["user.merged"] == merged
    assert by_action["user.purged"] == outcomes["purged"]["people"]

    # Audit verify is clean, over every record there is.
    checked = verify(store)
    assert checked.problem is None and summary["audit"]["ok"] is True
    assert checked.records == summary["audit"]["verified"] == after["audit_records"] == total

    # The renamed person the summary points at is one record with one license.
    old_upn, new_upn = summary["example_rename"]
    old_view, new_view = show_user(store, old_upn), show_user(store, new_upn)
    assert old_view["id"] == new_view["id"] and new_view["licenses"] == 1
    assert {"kind": "upn", "value": old_upn} in new_view["identifiers"]

    # The printed config works for the store-reading commands.
    status = cli("--config", summary["config"], "status", "--json")
    assert status.code == 0, status.err
    assert status.json()["licenses"] == {
        "used": after["used"],
        "purchased": after["purchased"],
        "pending": after["pending"],
    }
    assert status.json()["last_run"]["id"] == run_id


def _number_pair(text: str, label: str) -> tuple[str, str]:
    match = re.search(rf"{re.escape(label)}\s*[│|]\s*(\S+)\s*[│|]\s*(\S+)", text)
    assert match, f"{label!r} not in the summary:\n{text}"
    return match.group(1), match.group(2)


def test_text_summary_shows_the_story_and_how_to_explore_it(
    cli: Any, tmp_path: Path, store_of: Any
) -> None:
    where = tmp_path / "demo"
    result = cli("demo", "--dir", str(where), "--users", "60")
    assert result.code == 0, result.err
    out = result.out
    config = where / "entrasync.toml"
    store = store_of(config)
    with store.reading() as session:
        status = license_status(session, datetime.now(UTC))

    before, after = _number_pair(out, "licenses used / purchased")
    assert after == f"{status.used}/{status.purchased}"
    assert int(before.split("/")[0]) > status.used
    assert _number_pair(out, "waiting in the pending queue")[1] == str(status.pending)
    assert "$ entrasync plan" in out and "merge duplicate records (UPN change)" in out
    assert "hash chain intact" in out
    assert f"--config {config} users list" in out
    assert f"store:  {where / 'store.db'}" in out and (where / "store.db").exists()
    assert "\x1b[" not in out  # NO_COLOR (set by the cli fixture): no escape codes


def test_refuses_a_directory_that_already_holds_a_demo(cli: Any, tmp_path: Path) -> None:
    where = tmp_path / "demo"
    where.mkdir()
    (where / "store.db").write_bytes(b"precious")
    result = cli("demo", "--dir", str(where))
    assert result.code == 1 and "already holds a demo store" in result.err
    assert (where / "store.db").read_bytes() == b"precious"


def test_keep_running_serves_the_daemon_until_interrupted(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import threading
    import time

    where = tmp_path / "demo"
    env = {**os.environ, "NO_COLOR": "1"}
    entrasync = [sys.executable, "-m", "entrasync"]
    config = ["--config", str(where / "entrasync.toml")]
    demo = subprocess.Popen(
        [*entrasync, "demo", "--dir", str(where), "--users", "30", "--keep-running"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        assert demo.stdout is not None
        lines = []
        for line in demo.stdout:
            lines.append(line)
            if "Stop with Ctrl-C" in line:
                break
        assert any("running the daemon" in line for line in lines), "".join(lines)
        healthy = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            healthy = subprocess.run(
                [*entrasync, *config, "healthcheck", "--json"],
                capture_output=True,
                text=True,
                env=env,
            )
            if healthy.returncode == 0:
                break
            time.sleep(0.5)
        assert healthy is not None
        assert healthy.returncode == 0, healthy.stdout + healthy.stderr
        # keep reading its output (a child writing to a full pipe cannot stop), then Ctrl-C;
        # the daemon gives a transaction in progress up to daemon.stop_timeout (8 s) and
        # a loaded CI machine takes its time starting the interpreter's shutdown
        threading.Thread(target=demo.stdout.read, daemon=True).start()
        demo.send_signal(signal.SIGINT)  # Ctrl-C
        assert demo.wait(timeout=60) == 0
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
