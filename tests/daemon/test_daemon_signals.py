"""SIGTERM, SIGHUP and the systemd notify protocol, on a real `entrasync run` process."""

from __future__ import annotations

import signal
import socket
import sqlite3
import time
from pathlib import Path

from daemonworld import DaemonWorld, wait_for
from sqlalchemy import select
from sqlalchemy.engine import make_url

from entrasync.store.db import Store
from entrasync.store.schema import RunRow


def test_sigterm_exits_0_within_seconds(sqlite_world: DaemonWorld) -> None:
    daemon = sqlite_world.start("a")
    daemon.wait_event("cycle finished")
    started = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(timeout=10) == 0
    assert time.monotonic() - started < 3.0
    events = [e["event"] for e in daemon.log_events()]
    # a job the stop interrupts may log "job interrupted" between the two
    assert events[-1] == "stopped"
    assert "stopping" in events[events.index("cycle finished") :]
    # the instance removed itself: status no longer lists it
    store = sqlite_world.store()
    from entrasync.store.daemon_state import daemon_summary

    with store.reading() as session:
        from datetime import UTC, datetime

        assert daemon_summary(session, datetime.now(UTC))["instances"] == []
    store.engine.dispose()


def _set_stop_timeout(world: DaemonWorld, value: str) -> None:
    path = world.config_path
    path.write_text(
        path.read_text(encoding="utf-8").replace(
            'stop_timeout = "5s"', f'stop_timeout = "{value}"'
        ),
        encoding="utf-8",
    )


def _runs(store: Store) -> list[RunRow]:
    with store.reading() as session:
        return list(session.scalars(select(RunRow).order_by(RunRow.started_at)))


def test_sigterm_mid_graph_read_exits_at_once_and_records_the_run_interrupted(
    sqlite_world: DaemonWorld,
) -> None:
    """Graph hangs in the middle of a cycle's read: SIGTERM cancels the read (no store
    transaction is open while Graph is read), the run is recorded as interrupted, and the
    process exits 0 in well under `daemon.stop_timeout` (20 s here). Before, it waited for
    the read, up to stop_timeout."""
    _set_stop_timeout(sqlite_world, "20s")
    store = sqlite_world.store()
    daemon = sqlite_world.start("a")
    daemon.wait_event("cycle finished")
    hung = sqlite_world.emu.faults.add(r"/groups/delta", delay=60.0, times=1)
    wait_for("a cycle to reach the hung read", lambda: hung.hits == 1, timeout=10, every=0.02)
    running = [r for r in _runs(store) if r.status == "running"]
    assert len(running) == 1
    started = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(timeout=25) == 0
    took = time.monotonic() - started
    assert took < 3.0, took
    runs = {r.id: r for r in _runs(store)}
    store.engine.dispose()
    interrupted = runs[running[0].id]
    assert interrupted.status == "failed" and interrupted.finished_at is not None
    assert interrupted.message is not None and interrupted.message.startswith("interrupted")
    assert all(r.status != "running" for r in runs.values())
    events = [e["event"] for e in daemon.log_events()]
    assert "job interrupted" in events
    assert "stopping" in events and events[-1] == "stopped"  # a clean stop, no stop_timeout
    assert not any(e.startswith("a transaction was still open") for e in events)


def test_sighup_rejects_a_broken_config_and_applies_a_good_one(sqlite_world: DaemonWorld) -> None:
    daemon = sqlite_world.start("a")
    daemon.wait_event("cycle finished")
    path = sqlite_world.daemon_config(daemon)
    good = path.read_text(encoding="utf-8")

    path.write_text(good.replace('interval = "2s"', 'interval = "soon"'), encoding="utf-8")
    daemon.signal(signal.SIGHUP)
    rejected = daemon.wait_event("config reload rejected; the running config is kept")
    assert "schedule.interval" in rejected["error"]
    time.sleep(0.5)
    assert daemon.alive()
    answer = daemon.healthz()
    assert answer is not None and answer[0] == 200 and answer[1]["interval_s"] == 2.0

    path.write_text(good.replace('interval = "2s"', 'interval = "3s"'), encoding="utf-8")
    daemon.signal(signal.SIGHUP)
    reloaded = daemon.wait_event("config reloaded")
    assert reloaded["interval_s"] == 3.0
    answer = daemon.healthz()
    assert answer is not None and answer[1]["interval_s"] == 3.0

    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(timeout=10) == 0


def test_sd_notify_ready_status_watchdog_stopping(
    sqlite_world: DaemonWorld, tmp_path: Path
) -> None:
    address = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(0.2)
    messages: list[str] = []

    def drain() -> list[str]:
        while True:
            try:
                messages.append(sock.recv(4096).decode())
            except TimeoutError:
                return messages

    try:
        daemon = sqlite_world.start("a", env={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "1000000"})
        wait_for("READY=1", lambda: any("READY=1" in m for m in drain()))
        ready = next(m for m in messages if "READY=1" in m)
        assert f"MAINPID={daemon.proc.pid}" in ready
        assert "STATUS=leader" in ready
        # the watchdog is pinged every half WATCHDOG_USEC (0.5 s)
        wait_for(
            "three WATCHDOG=1", lambda: sum("WATCHDOG=1" in m for m in drain()) >= 3, timeout=5
        )
        daemon.signal(signal.SIGTERM)
        assert daemon.wait_exit(timeout=10) == 0
        assert any("STOPPING=1" in m for m in drain())
    finally:
        sock.close()


def test_sigterm_gives_up_on_a_stuck_transaction_at_stop_timeout(
    sqlite_world: DaemonWorld,
) -> None:
    """Another process holds the store's write lock: the daemon's next transaction waits for
    it (SQLite's busy timeout is 30 s). SIGTERM then waits `daemon.stop_timeout` (1 s) and
    exits 0 anyway."""
    _set_stop_timeout(sqlite_world, "1s")
    store = sqlite_world.store()
    daemon = sqlite_world.start("a")
    daemon.wait_event("cycle finished")
    database = make_url(sqlite_world.store_url).database
    assert database
    blocker = sqlite3.connect(database, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        wait_for(
            "a cycle to wait for the write lock",
            lambda: (h := daemon.healthz()) and h[1]["next_runs"].get("sync") == "running",
            timeout=10,
        )
        time.sleep(0.5)
        started = time.monotonic()
        daemon.signal(signal.SIGTERM)
        assert daemon.wait_exit(timeout=10) == 0
        assert time.monotonic() - started < 3.0
    finally:
        blocker.rollback()
        blocker.close()
    events = daemon.log_events()
    gave_up = [e for e in events if e["event"].startswith("a transaction was still")]
    assert gave_up and gave_up[0]["stop_timeout_s"] == 1.0
    # nothing was left half-done: the next daemon works normally
    successor = sqlite_world.start("b")
    successor.wait_event("cycle finished")
    assert _runs(store)[-1].status == "ok"
    successor.signal(signal.SIGTERM)
    assert successor.wait_exit(timeout=10) == 0
    store.engine.dispose()
