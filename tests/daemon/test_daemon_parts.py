"""The daemon's parts in-process: backoff, the health rule, listen addresses, sd_notify, the
leader locks (file and PostgreSQL), the transaction gate, the failure-alert streak, and the
log scrubber."""

from __future__ import annotations

import io
import json
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from entrasync.config import parse_config
from entrasync.daemon import failures
from entrasync.daemon.health import judge, parse_listen
from entrasync.daemon.healthcheck import health_url
from entrasync.daemon.leadership import lease_wait
from entrasync.daemon.logs import configure_logging, get_logger, scrubber
from entrasync.daemon.systemd import Notifier
from entrasync.errors import ConfigError
from entrasync.store.db import Store
from entrasync.store.gate import Stopping, TransactionGate
from entrasync.store.leader_lock import (
    LEADER_LOCK_CLASS,
    FileLeaderLock,
    PostgresLeaderLock,
    leader_lock_for,
)
from entrasync.store.schema import OutboxRow

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def test_backoff_doubles_from_the_interval_up_to_the_cap() -> None:
    delays = [failures.next_delay(5 * MIN, 60 * MIN, n) for n in range(7)]
    assert delays == [5 * MIN, 5 * MIN, 10 * MIN, 20 * MIN, 40 * MIN, 60 * MIN, 60 * MIN]
    # a cap below the interval never makes cycles more frequent than the interval
    assert failures.next_delay(5 * MIN, MIN, 4) == 5 * MIN
    assert failures.next_delay(timedelta(seconds=1), 60 * MIN, 1000) == 60 * MIN


def test_backoff_never_below_the_floor_whatever_the_config_says() -> None:
    zero, second = timedelta(0), timedelta(seconds=1)
    assert second == failures.MIN_DELAY
    assert [failures.next_delay(zero, zero, n) for n in range(5)] == [second] * 5
    # a failing daemon still backs off from the floor up to max_backoff
    delays = [failures.next_delay(zero, 8 * second, n) for n in range(6)]
    assert delays == [second, second, 2 * second, 4 * second, 8 * second, 8 * second]
    assert failures.next_delay(-5 * second, zero, 3) == second


def test_a_standby_retries_an_unreachable_store_less_and_less_often() -> None:
    second = timedelta(seconds=1)
    # interval 1 s: a lease tick of 0.5 s while the store answers, then 1, 2, 4 (max_backoff)
    assert [lease_wait(second, 4 * second, n) for n in range(6)] == [0.5, 1, 2, 4, 4, 4]
    # the default max_backoff (1 h): at most a minute, to take over soon after the store is back
    assert lease_wait(5 * MIN, 60 * MIN, 0) == 5.0
    assert lease_wait(5 * MIN, 60 * MIN, 40) == 60.0
    # a max_backoff below the tick never makes the tries more frequent
    assert lease_wait(5 * MIN, timedelta(0), 3) == 5.0


def test_health_rule_three_intervals() -> None:
    interval = 5 * MIN
    fresh = judge(T0 + 14 * MIN, interval, T0, None, 0)
    assert (fresh.healthy, fresh.status) == (True, "starting")
    never = judge(T0 + 16 * MIN, interval, T0, None, 3)
    assert (never.healthy, never.status) == (False, "stale")
    ok = judge(T0 + 20 * MIN, interval, T0, T0 + 19 * MIN, 0)
    assert (ok.healthy, ok.status) == (True, "ok")
    failing = judge(T0 + 20 * MIN, interval, T0, T0 + 10 * MIN, 2)
    assert (failing.healthy, failing.status) == (True, "failing")
    stale = judge(T0 + 30 * MIN, interval, T0, T0 + 14 * MIN, 4)
    assert (stale.healthy, stale.status) == (False, "stale")
    assert "16m ago" in stale.reason


def test_listen_addresses() -> None:
    assert parse_listen("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert parse_listen("[::1]:9464") == ("::1", 9464)
    assert parse_listen(":9464") == ("0.0.0.0", 9464)  # noqa: S104 - parsing, not binding
    for bad in ("9464", "host:", "host:port", "host:70000"):
        with pytest.raises(ConfigError, match=r"daemon\.listen"):
            parse_listen(bad)
    assert health_url("0.0.0.0:9464") == "http://127.0.0.1:9464/healthz"
    assert health_url("[::]:9464") == "http://[::1]:9464/healthz"
    assert health_url("10.0.0.5:80") == "http://10.0.0.5:80/healthz"


def test_sd_notify_datagrams(tmp_path: Path) -> None:
    address = str(tmp_path / "n.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(address)
        sock.settimeout(1)
        notifier = Notifier({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "20000000"})
        assert notifier.watchdog_interval == 10.0
        notifier.ready("leader")
        assert sock.recv(1024).decode().splitlines()[:2] == ["READY=1", "STATUS=leader"]
        notifier.watchdog_due()
        notifier.watchdog_due()  # not due again within the half interval
        notifier.stopping()
        assert sock.recv(1024) == b"WATCHDOG=1"
        assert sock.recv(1024).startswith(b"STOPPING=1")
    assert Notifier({"WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"}).watchdog_interval is None
    silent = Notifier({})
    assert not silent.enabled and silent.send("READY=1") is False


def test_file_lock_one_holder_at_a_time(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}", check_schema=False)
    first = leader_lock_for(store.engine)
    assert isinstance(first, FileLeaderLock)
    assert first.path == tmp_path / "store.db.leader.lock"
    second = FileLeaderLock(first.path)
    assert first.try_acquire() and first.try_acquire()  # re-entrant check
    assert not second.try_acquire()
    first.release()
    assert second.try_acquire() and second.still_held()
    assert not first.try_acquire() and not first.still_held()
    second.release()
    store.engine.dispose()


@pytest.mark.postgres
def test_postgres_lock_one_holder_and_lost_connection(make_store_url: Any) -> None:
    url = make_store_url("postgresql")
    first, second = PostgresLeaderLock(url), PostgresLeaderLock(url)
    try:
        assert first.try_acquire() and first.still_held()
        assert not second.try_acquire()
        first.release()
        assert second.try_acquire()
        assert not first.try_acquire()
        # the holder's session dies (server restart, network): it no longer holds the lock,
        # and PostgreSQL has released it for the next try
        store = Store(url, check_schema=False)
        with store.engine.begin() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
                    "AND classid::bigint = :c"
                ),
                {"c": LEADER_LOCK_CLASS},
            )
        store.engine.dispose()
        assert not second.still_held()
        assert first.try_acquire()
        # a deployment in another schema of the same database has a leader of its own
        other = PostgresLeaderLock(make_store_url("postgresql"))
        assert other.try_acquire() and other.key != first.key
        other.release()
    finally:
        first.release()
        second.release()


def test_gate_stops_new_transactions_not_the_current_one(store: Store) -> None:
    leader = {"now": True}
    gate = TransactionGate(store.engine, lambda: leader["now"])
    try:
        with store.transaction() as session:
            session.execute(text("SELECT 1"))
            gate.close()  # mid-transaction: this one goes on and commits
            session.execute(text("SELECT 2"))
        with pytest.raises(Stopping, match="stopping"), store.transaction() as session:
            session.execute(text("SELECT 1"))
        with gate.bypass(), store.reading() as session:
            assert session.execute(text("SELECT 1")).scalar() == 1
    finally:
        gate.remove()
    gate = TransactionGate(store.engine, lambda: leader["now"])
    try:
        with gate.leader_work(), store.reading() as session:
            session.execute(text("SELECT 1"))
        leader["now"] = False
        with pytest.raises(Stopping, match="no longer the leader"):  # noqa: SIM117
            with gate.leader_work(), store.reading() as session:
                session.execute(text("SELECT 1"))
        with store.reading() as session:  # other work (heartbeat, health) goes on
            session.execute(text("SELECT 1"))
    finally:
        gate.remove()


def test_failure_streak_emails_once_and_once_on_recovery(store: Store) -> None:
    config = parse_config(
        {
            "store": {"url": store.url},
            "daemon": {"failure_alert_after": 3},
            "notify": {"admins": ["ops@example.com"]},
        }
    )
    for n in range(1, 6):
        streak = failures.record_failure(store, config, T0 + n * MIN, f"error {n}", "host1")
        assert streak["consecutive_failures"] == n
    assert streak["last_error"] == "error 5"
    failures.record_success(store, config, T0 + 10 * MIN, "run-9", "host1")
    failures.record_success(store, config, T0 + 11 * MIN, "run-10", "host1")
    failures.record_failure(store, config, T0 + 12 * MIN, "again", "host1")
    with store.reading() as session:
        emails = session.scalars(select(OutboxRow).order_by(OutboxRow.id)).all()
    assert [(e.topic, e.created_at) for e in emails] == [
        ("cycles.failing", T0 + 3 * MIN),
        ("cycles.recovered", T0 + 10 * MIN),
    ]
    assert "error 3" in emails[0].body and "run-9" in emails[1].body


def test_no_admins_no_email_but_the_streak_is_kept(store: Store) -> None:
    config = parse_config({"store": {"url": store.url}, "daemon": {"failure_alert_after": 1}})
    streak = failures.record_failure(store, config, T0, "boom", "h")
    assert streak["alerted_at"]  # considered told: nobody to tell
    with store.reading() as session:
        assert session.scalars(select(OutboxRow)).all() == []


def test_log_lines_are_json_and_scrubbed() -> None:
    out = io.StringIO()
    configure_logging("info", "auto", stream=out)  # StringIO is not a TTY: JSON
    scrubber.set(["s3cr3t-value-123", "abc"])  # too short to be a secret worth scrubbing
    get_logger("entrasync.test").info("token s3cr3t-value-123 used", run_id="r1", note="abc")
    import logging

    logging.getLogger("entrasync.sync").info("x %s", "y", extra={"run_id": "r2"})
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines[0]["event"] == "token *** used" and lines[0]["note"] == "abc"
    assert lines[0]["run_id"] == "r1" and lines[0]["level"] == "info"
    assert lines[1]["event"] == "x y" and lines[1]["run_id"] == "r2"
    scrubber.set([])
    logging.getLogger().handlers.clear()


def test_scrubber_learns_a_rotated_secret_without_forgetting_the_old() -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    scrubber.set(["first-secret-value"])
    scrubber.add("rotated-secret-value")
    scrubber.add("rotated-secret-value")  # learning twice changes nothing
    get_logger("entrasync.test").info("old first-secret-value new rotated-secret-value")
    line = json.loads(out.getvalue().splitlines()[-1])
    assert line["event"] == "old *** new ***"
    scrubber.set([])
    import logging

    logging.getLogger().handlers.clear()


def test_an_instance_that_leads_again_keeps_the_spacing_of_its_last_cycle(tmp_path: Path) -> None:
    """A cycle cut short by a lost leadership sets when the next may start; leading again
    (a flapping lock connection) does not start one sooner. A fresh leader starts at once."""
    from entrasync.daemon.service import Daemon

    url = f"sqlite:///{tmp_path / 'store.db'}"
    Store(url, check_schema=False).upgrade()
    config = parse_config({"store": {"url": url}, "daemon": {"listen": "127.0.0.1:0"}})
    daemon = Daemon(config, {})
    daemon.scheduler.start()
    try:
        daemon._become_leader()
        job = daemon.scheduler.get_job("sync")
        assert job is not None and job.next_run_time <= datetime.now(UTC)
        daemon._step_down("test")
        later = datetime.now(UTC) + 10 * MIN
        daemon._not_before = later  # what a cycle that started, then lost the lock, leaves
        daemon._become_leader()
        job = daemon.scheduler.get_job("sync")
        assert job is not None and job.next_run_time == later
    finally:
        assert daemon.stop(1)  # the health server was never started: stop() still returns
