"""Two `entrasync run` processes on one store: one leads, one stands by; SIGKILL the leader and
the standby takes over within about one interval, finishes the work, and the audit chain stays
intact. On both backends."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from daemonworld import SECRET, DaemonWorld, wait_for
from sqlalchemy import func, select, text
from testkit import report

from entrasync.config import load_config
from entrasync.domain.reports import parse_reports
from entrasync.services.ingest import ingest_reports
from entrasync.store.db import Store
from entrasync.store.leader_lock import LEADER_LOCK_CLASS
from entrasync.store.schema import AuditRow, RunRow, UserRow


def _ingest(world: DaemonWorld, store: Store, logons: list[str]) -> None:
    lines = [report(f"CONTOSO\\{logon}", "PC-1", upn=f"{logon}@contoso.com") for logon in logons]
    ingest_reports(
        store, load_config(world.config_path), parse_reports(lines), datetime.now(UTC), "test"
    )


def _untracked(store: Store) -> int:
    with store.reading() as session:
        return int(
            session.scalar(select(func.count(UserRow.id)).where(UserRow.tracking == "untracked"))
            or 0
        )


def _cli(world: DaemonWorld, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "entrasync", "--config", str(world.config_path), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"ENTRASYNC_CLIENT_SECRET": SECRET, "PATH": "/usr/bin:/bin"},
    )


def test_leader_standby_failover_keeps_the_audit_chain(dworld: DaemonWorld) -> None:
    store = dworld.store()
    first = [dworld.tenant.add_user(f"u{i}@contoso.com") for i in range(3)]
    _ingest(dworld, store, [f"u{i}" for i in range(6)])
    dworld.tenant.add_members(dworld.dnt, first)

    a = dworld.start("a")
    wait_for("a to lead", lambda: a.role() == "leader")
    b = dworld.start("b")
    # b answers, stands by, and is healthy: the store's last successful run is a's.
    wait_for("a's first cycle to untrack 3", lambda: _untracked(store) == 3)
    code, health_b = wait_for("b healthy", lambda: (h := b.healthz()) and h[0] == 200 and h)
    assert health_b["role"] == "standby"
    assert health_b["next_runs"] == {}  # a standby runs no jobs
    code, health_a = a.healthz() or (0, {})
    assert code == 200 and health_a["role"] == "leader" and health_a["status"] == "ok"
    assert set(health_a["next_runs"]) == {"sync", "retention", "outbox", "checkpoint", "forward"}
    time.sleep(1.5)  # several leader ticks: b must stay standby while a lives
    assert b.role() == "standby" and a.role() == "leader"

    # status (from the store) knows both instances and the leader's next run times
    status = _cli(dworld, "status", "--json")
    assert status.returncode == 0, status.stderr
    daemon = json.loads(status.stdout)["daemon"]
    roles = sorted(i["role"] for i in daemon["instances"])
    assert roles == ["leader", "standby"]
    assert daemon["leader"] == health_a["instance"]
    assert "sync" in daemon["jobs"]

    # kill a in the middle of a cycle (inside a slow Graph read, its transaction open)
    slow = dworld.emu.faults.add(r"/groups/delta", delay=1.0, times=1)
    wait_for("a cycle in its slow read", lambda: slow.hits == 1, every=0.02)
    a.proc.kill()
    a.wait_exit()
    killed = time.monotonic()
    wait_for("b to take over", lambda: b.role() == "leader", timeout=10)
    took = time.monotonic() - killed
    # one interval (2 s) plus a lock tick (0.5 s) and some polling slack
    assert took < 4.0, took

    # work that arrives after the failover is done by b
    later = [dworld.tenant.add_user(f"v{i}@contoso.com") for i in range(3)]
    _ingest(dworld, store, [f"v{i}" for i in range(3)])
    dworld.tenant.add_members(dworld.dnt, later)
    wait_for("b to untrack 3 more", lambda: _untracked(store) == 6)
    b.wait_event("became the leader")
    assert b.wait_event("closed runs abandoned by a previous leader")["runs"] == 1

    verify = _cli(dworld, "audit", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    b.signal(signal.SIGTERM)
    assert b.wait_exit(timeout=10) == 0
    with store.reading() as session:
        untracked_records = session.scalar(
            select(func.count()).select_from(AuditRow).where(AuditRow.action == "user.untracked")
        )
        running = session.scalar(
            select(func.count()).select_from(RunRow).where(RunRow.status == "running")
        )
    assert untracked_records == 6  # exactly once each, whoever applied it
    # a cycle a was killed in is closed by b when it takes over, b's own on its clean stop
    assert running == 0
    store.engine.dispose()


@pytest.mark.postgres
def test_postgres_leader_that_loses_its_lock_connection_steps_down(pg_world: DaemonWorld) -> None:
    store = pg_world.store()
    a = pg_world.start("a")
    wait_for("a to lead", lambda: a.role() == "leader")
    with store.engine.begin() as conn:
        killed = conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_locks "
                "WHERE locktype = 'advisory' AND granted "
                "AND classid::bigint = :c"
            ),
            {"c": LEADER_LOCK_CLASS},
        ).all()
    assert killed == [(True,)]
    event: dict[str, Any] = a.wait_event("stepped down to standby", timeout=10)
    assert "lock was lost" in event["reason"]
    # nobody else holds it: a takes it back on its next tick
    wait_for("a to lead again", lambda: a.role() == "leader", timeout=10)
    a.signal(signal.SIGTERM)
    assert a.wait_exit(timeout=10) == 0
    store.engine.dispose()
