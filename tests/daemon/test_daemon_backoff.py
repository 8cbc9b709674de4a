"""Every way a cycle or a leader job can fail backs off, and none busy-loops: attempts counted
over time on a real `entrasync run` against the emulator and a real store.

Time is scaled down: `schedule.interval = "1s"` and `daemon.max_backoff = "4s"` (the world's
config), so a healthy daemon cycles every second and a failing one waits 1, 2, 4, 4, … s.
"""

from __future__ import annotations

import itertools
import signal
import time
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from daemonworld import SECRET, DaemonWorld, make_daemon_world, wait_for
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from tcpproxy import tcp_proxy

from entrasync.config import load_config
from entrasync.daemon.service import Daemon
from entrasync.store.daemon_state import CYCLES_KEY, DaemonStateRow
from entrasync.store.db import Store

WINDOW = 13.0  # seconds of failures watched: attempts at about 0, 1, 3, 7 and 11 s


def _one_second_interval(world: DaemonWorld) -> None:
    path = world.config_path
    path.write_text(
        path.read_text(encoding="utf-8").replace('interval = "2s"', 'interval = "1s"'),
        encoding="utf-8",
    )


def _gaps(times: list[float]) -> list[float]:
    return [round(b - a, 2) for a, b in itertools.pairwise(times)]


def _assert_backs_off_to_the_cap(gaps: list[float]) -> None:
    """1 s, 2 s, then 4 s (max_backoff) each time: a cycle's own duration may add a little,
    and nothing comes sooner."""
    assert 3 <= len(gaps) <= 5, gaps
    assert gaps[0] >= 0.9 and gaps[1] >= 1.9, gaps
    assert all(g >= 3.9 for g in gaps[2:]), gaps
    assert all(g <= 4 + 1.5 for g in gaps), gaps  # the cap holds


def _event_times(events: list[dict[str, object]], name: str) -> list[float]:
    stamps = [str(e["timestamp"]) for e in events if e["event"] == name]
    return [datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() for s in stamps]


def test_graph_throttled_with_a_long_retry_after_backs_off_up_to_max_backoff(
    sqlite_world: DaemonWorld,
) -> None:
    """429 with `Retry-After: 3600` on every Graph request: each cycle gives up at once (the
    hint is past the client's retry budget) and the daemon spaces the cycles 1, 2, 4, 4 s."""
    world = sqlite_world
    _one_second_interval(world)
    daemon = world.start("a")
    daemon.wait_event("cycle finished")
    world.emu.faults.throttle(r"^/v1\.0/", times=None, retry_after=3600)
    since = time.monotonic()
    time.sleep(WINDOW)
    reads = [r.started for r in world.emu.log.records(r"^/v1\.0/users/delta") if r.started > since]
    _assert_backs_off_to_the_cap(_gaps(reads))
    assert all(r.status == 429 for r in world.emu.log.records(r"^/v1\.0/") if r.started > since)
    failed = [e for e in daemon.log_events() if e["event"] == "cycle failed"]
    assert [e["retry_in_s"] for e in failed[:3]] == [1.0, 2.0, 4.0]
    assert all(e["retry_in_s"] == 4.0 for e in failed[3:])
    assert "429" in str(failed[0]["error"])

    world.emu.faults.clear()
    finished = len([e for e in daemon.log_events() if e["event"] == "cycle finished"])
    wait_for(
        "a cycle to succeed again within max_backoff",
        lambda: len([e for e in daemon.log_events() if e["event"] == "cycle finished"]) > finished,
        timeout=4 + 3,
    )
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(timeout=10) == 0


_REFUSE_SQLITE = {
    "refuse_runs_insert": "BEFORE INSERT ON runs",
    "refuse_runs_update": "BEFORE UPDATE ON runs",
    "refuse_state_insert": "BEFORE INSERT ON daemon_state WHEN NEW.key = 'cycles'",
    "refuse_state_update": "BEFORE UPDATE ON daemon_state WHEN NEW.key = 'cycles'",
}
_REFUSE_POSTGRES = [
    "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$",
    "CREATE TRIGGER refuse_runs BEFORE INSERT OR UPDATE ON runs "
    "FOR EACH ROW EXECUTE FUNCTION refuse()",
    "CREATE TRIGGER refuse_state BEFORE INSERT OR UPDATE ON daemon_state "
    "FOR EACH ROW WHEN (NEW.key = 'cycles') EXECUTE FUNCTION refuse()",
]


def _refuse_writes(store: Store, on: bool) -> None:
    """The store refuses to record runs and the failure streak, with an error the store layer
    does not classify (a constraint raised by a trigger; a revoked privilege or a full disk
    look the same to the daemon): the cycle fails with what looks like a bug, and recording
    the failure fails too."""
    with store.engine.begin() as conn:
        if store.dialect != "sqlite":
            for statement in _REFUSE_POSTGRES if on else ["DROP FUNCTION refuse() CASCADE"]:
                conn.execute(text(statement))
            return
        for name, when in _REFUSE_SQLITE.items():
            conn.execute(
                text(
                    f"CREATE TRIGGER {name} {when} "
                    "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
                    if on
                    else f"DROP TRIGGER {name}"
                )
            )


def test_cycles_go_on_when_the_store_refuses_the_run_and_the_failure_streak(
    dworld: DaemonWorld,
) -> None:
    """Before: the first failure that could not be recorded ended the cycles for good (the
    next run was never scheduled), even after the store recovered."""
    world = dworld
    _one_second_interval(world)
    store = world.store()
    daemon = world.start("a")
    daemon.wait_event("cycle finished")
    _refuse_writes(store, on=True)
    since = time.time()
    time.sleep(WINDOW)
    events = daemon.log_events()
    crashed = [t for t in _event_times(events, "cycle failed") if t > since]
    _assert_backs_off_to_the_cap(_gaps(crashed))
    failed = [e for e in events if e["event"] == "cycle failed"]
    assert [e["consecutive_failures"] for e in failed[:4]] == [1, 2, 3, 4]  # kept in memory
    assert "refused by the test" in str(failed[0]["error"])
    unrecorded = [
        e for e in events if e["event"] == "could not record the failed cycle in the store"
    ]
    assert unrecorded and "refused by the test" in str(unrecorded[0]["error"])
    answer = daemon.healthz()
    assert answer is not None and answer[1]["consecutive_failures"] >= 4

    _refuse_writes(store, on=False)
    wait_for(
        "a cycle to succeed once the store takes writes again",
        lambda: any(t > since for t in _event_times(daemon.log_events(), "cycle finished")),
        timeout=4 + 3,
    )
    with store.reading() as session:
        row = session.scalar(select(DaemonStateRow).where(DaemonStateRow.key == CYCLES_KEY))
    assert row is not None and row.value["consecutive_failures"] == 0
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(timeout=10) == 0
    store.engine.dispose()


@pytest.mark.postgres
def test_store_down_the_leader_steps_down_and_retries_with_backoff(
    tmp_path: Path, make_store_url: Any
) -> None:
    """PostgreSQL goes away (connections reset, new ones refused): the leader steps down; as a
    standby it retries the store 1, 2, 4, 4 s apart instead of every lease tick (0.5 s here),
    logs the outage once, keeps answering /healthz, and leads again soon after the store is
    back."""
    url = make_url(make_store_url("postgresql"))
    with tcp_proxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        proxied = url.set(host="127.0.0.1", port=proxy.port)
        with contextmanager(make_daemon_world)(
            tmp_path, proxied.render_as_string(hide_password=False)
        ) as world:
            _one_second_interval(world)
            daemon = world.start("a")
            daemon.wait_event("cycle finished")
            proxy.cut()
            since = time.monotonic()
            daemon.wait_event("stepped down to standby", timeout=5)
            time.sleep(WINDOW)
            answer = daemon.healthz()
            assert answer is not None and answer[1]["role"] == "standby"
            attempts = proxy.attempts(since)
            # At every lease tick that would be some 30 tries; backing off, the lock is tried
            # at about 1, 3, 7 and 11 s, plus the engine's tries behind the heartbeat.
            assert len(attempts) <= 12, _gaps(attempts)
            late = [t for t in attempts if t > since + 4]
            assert len(late) <= 6, _gaps(attempts)
            events = daemon.log_events()
            lock_lines = [e for e in events if str(e["event"]).startswith("leader lock:")]
            assert len(lock_lines) == 1, lock_lines  # once per outage, not at every try

            proxy.restore()
            restored = time.monotonic()
            wait_for("the daemon to lead again", lambda: daemon.role() == "leader", timeout=7)
            assert time.monotonic() - restored < 4 + 3
            wait_for(
                "a cycle after the outage",
                lambda: (
                    len([e for e in daemon.log_events() if e["event"] == "cycle finished"]) >= 2
                ),
                timeout=10,
            )
            daemon.signal(signal.SIGTERM)
            assert daemon.wait_exit(timeout=10) == 0


def test_an_interval_of_zero_never_busy_loops(sqlite_world: DaemonWorld) -> None:
    """The config refuses `schedule.interval = "0s"`, but the daemon does not rely on it: a
    config that says 0 (here built in-process, past validation) still spaces the cycles by
    the floor (1 s), succeeding or failing. Before: a cycle right after the other, at 100%
    CPU, hammering Graph."""
    world = sqlite_world
    config = load_config(world.config_path)
    zero = config.model_copy(
        update={
            "schedule": config.schedule.model_copy(update={"interval": timedelta(0)}),
            "daemon": config.daemon.model_copy(update={"max_backoff": timedelta(0)}),
        }
    )
    daemon = Daemon(zero, {"ENTRASYNC_CLIENT_SECRET": SECRET})
    daemon.start()
    try:
        time.sleep(3.5)
        succeeding = world.emu.log.records(r"^/v1\.0/users/delta")
        world.emu.faults.add(r"^/v1\.0/", status=400, times=None)  # a failure, no retry
        since = time.monotonic()
        time.sleep(3.5)
        failing = [r for r in world.emu.log.records(r"^/v1\.0/users/delta") if r.started > since]
    finally:
        assert daemon.stop(5)
    assert 2 <= len(succeeding) <= 5, len(succeeding)
    assert 2 <= len(failing) <= 5, len(failing)
    assert all(g >= 0.95 for g in _gaps([r.started for r in succeeding + failing])), _gaps(
        [r.started for r in succeeding + failing]
    )
