"""SIGTERM, SIGHUP and the systemd notify protocol, on a real `entrasync run` process."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

from daemonworld import DaemonWorld, wait_for
from sqlalchemy import select

from entrasync.store.schema import RunRow


def test_sigterm_exits_0_within_seconds(sqlite_world: DaemonWorld) -> None:
    daemon = sqlite_world.start("a")
    daemon.wait_event("cycle finished")
    started = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(timeout=10) == 0
    assert time.monotonic() - started < 3.0
    events = [e["event"] for e in daemon.log_events()]
    assert events[-2:] == ["stopping", "stopped"]
    # the instance removed itself: status no longer lists it
    store = sqlite_world.store()
    from entrasync.daemon.state import daemon_summary

    with store.reading() as session:
        from datetime import UTC, datetime

        assert daemon_summary(session, datetime.now(UTC))["instances"] == []
    store.engine.dispose()


def test_sigterm_mid_cycle_finishes_the_transaction_then_stops(
    sqlite_world: DaemonWorld,
) -> None:
    """A slow Graph read holds the cycle inside its first transaction; SIGTERM lets that
    transaction commit, starts no other one, and records the run as interrupted."""
    # (opened first: opening a Store checks the schema in a write transaction, which would
    # wait behind the cycle's)
    store = sqlite_world.store()
    daemon = sqlite_world.start("a")
    daemon.wait_event("cycle finished")
    slow = sqlite_world.emu.faults.add(r"/groups/delta", delay=2.0, times=1)
    wait_for("a cycle to reach the slow read", lambda: slow.hits == 1, timeout=10, every=0.02)
    with store.reading() as session:
        assert session.scalar(select(RunRow.id).where(RunRow.status == "running")) is not None
    started = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(timeout=15) == 0
    took = time.monotonic() - started
    assert 1.0 < took < 5.0, took  # waited for the read (2 s), not for stop_timeout (5 s)
    with store.reading() as session:
        runs = session.scalars(select(RunRow).order_by(RunRow.started_at)).all()
    store.engine.dispose()
    assert runs[-1].status == "failed"
    assert runs[-1].message is not None and runs[-1].message.startswith("interrupted")
    assert all(r.status != "running" for r in runs)
    interrupted = [e for e in daemon.log_events() if e["event"] == "job interrupted"]
    assert interrupted and "stopping" in interrupted[0]["reason"]


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
    path = sqlite_world.config_path
    path.write_text(
        path.read_text().replace('stop_timeout = "5s"', 'stop_timeout = "1s"'), encoding="utf-8"
    )
    store = sqlite_world.store()
    daemon = sqlite_world.start("a")
    daemon.wait_event("cycle finished")
    slow = sqlite_world.emu.faults.add(r"/groups/delta", delay=8.0, times=1)
    wait_for("a cycle to reach the slow read", lambda: slow.hits == 1, timeout=10, every=0.02)
    started = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(timeout=10) == 0
    assert time.monotonic() - started < 3.0
    gave_up = [e for e in daemon.log_events() if e["event"].startswith("a transaction was still")]
    assert gave_up and gave_up[0]["stop_timeout_s"] == 1.0
    # the open transaction was rolled back with the process: the next daemon works normally
    successor = sqlite_world.start("b")
    successor.wait_event("cycle finished")
    with store.reading() as session:
        statuses = [r.status for r in session.scalars(select(RunRow).order_by(RunRow.started_at))]
    assert statuses[-1] == "ok"
    successor.signal(signal.SIGTERM)
    assert successor.wait_exit(timeout=10) == 0
    store.engine.dispose()
