"""/healthz, /metrics, `entrasync healthcheck`, failing cycles (backoff, one alert email, one
recovery email), the per-action log lines, and no secret in any log line."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from daemonworld import SECRET, DaemonWorld, wait_for
from sqlalchemy import select
from testkit import report

from entrasync.config import load_config
from entrasync.domain.reports import parse_reports
from entrasync.services.ingest import ingest_reports
from entrasync.store.schema import AuditRow, OutboxRow


def _healthcheck(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "entrasync", "--config", str(config), "healthcheck", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def test_metrics_action_log_lines_and_no_secret_in_the_logs(sqlite_world: DaemonWorld) -> None:
    world = sqlite_world
    path = world.config_path
    path.write_text(path.read_text() + '\nlevel = "debug"\n', encoding="utf-8")  # [logging]
    store = world.store()
    people = [world.tenant.add_user(f"p{i}@contoso.com") for i in range(4)]
    lines = [report(f"CONTOSO\\p{i}", "PC", upn=f"p{i}@contoso.com") for i in range(4)]
    ingest_reports(store, load_config(path), parse_reports(lines), datetime.now(UTC), "test")
    world.tenant.add_members(world.dnt, people[:2])

    daemon = world.start("a")
    finished = daemon.wait_event("cycle finished")
    assert finished["applied"]["untrack"] == 2
    applied = [e for e in daemon.log_events() if e["event"].startswith("action applied")]
    assert {e["run_id"] for e in applied} == {finished["run_id"]}
    untracked = [e for e in applied if e["action"] == "untrack"]
    assert len(untracked) == 2
    assert all(e["user_id"] and e["reason"].startswith("member of") for e in untracked)

    metrics = wait_for(
        "license gauges",
        lambda: (m := daemon.metrics()) and _metric(m, "entrasync_licenses_purchased") and m,
    )
    # untracked users keep their history, so all four still hold a license
    assert _metric(metrics, "entrasync_licenses_used") == 4
    assert _metric(metrics, "entrasync_licenses_purchased") == 100
    assert _metric(metrics, "entrasync_licenses_pending") == 0
    assert _metric(metrics, 'entrasync_actions_total{kind="untrack"}') == 2
    assert _metric(metrics, 'entrasync_cycles_total{outcome="ok"}') >= 1
    assert _metric(metrics, 'entrasync_cycles_total{outcome="failed"}') == 0
    assert _metric(metrics, 'entrasync_graph_requests_total{api="graph",status="200"}') >= 2
    assert _metric(metrics, 'entrasync_graph_requests_total{api="login",status="200"}') >= 1
    assert _metric(metrics, "entrasync_cycle_duration_seconds_count") >= 1
    assert _metric(metrics, "entrasync_last_success_timestamp_seconds") > 1.7e9
    assert _metric(metrics, "entrasync_leader") == 1

    check = _healthcheck(world.daemon_config(daemon))
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.startswith("healthy: ok (leader)")

    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(timeout=10) == 0
    output = daemon.log_text()
    assert any(e["level"] == "debug" for e in daemon.log_events())  # the chattiest level
    assert SECRET not in output
    assert SECRET not in json.dumps(daemon.log_events())
    store.engine.dispose()


def test_failing_cycles_back_off_alert_once_fail_healthcheck_then_recover(
    sqlite_world: DaemonWorld,
) -> None:
    world = sqlite_world
    secret_file = world.tmp / "client-secret"
    secret_file.write_text("wrong-secret-value\n", encoding="utf-8")
    path = world.config_path
    text = path.read_text().replace('interval = "2s"', 'interval = "1s"')
    text = text.replace("[entra]\n", f'[entra]\nclient_secret_file = "{secret_file}"\n')
    path.write_text(text, encoding="utf-8")
    store = world.store()

    daemon = world.start("a", env={"ENTRASYNC_CLIENT_SECRET": ""})
    _, body = wait_for(
        "/healthz to turn 503", lambda: (h := daemon.healthz()) and h[0] == 503 and h, timeout=15
    )
    assert body["status"] == "stale" and body["role"] == "leader"
    assert body["last_success"] is None and body["consecutive_failures"] >= 2
    check = _healthcheck(world.daemon_config(daemon))
    assert check.returncode == 1
    assert check.stdout.startswith("unhealthy: stale (leader)")

    failed = [e for e in daemon.log_events() if e["event"] == "cycle failed"]
    assert "wrong-secret-value" not in daemon.log_text()
    assert all(e["error"] for e in failed)
    assert [e["retry_in_s"] for e in failed[:3]] == [1.0, 2.0, 4.0]  # doubling, cap 4 s
    assert all(e["retry_in_s"] == 4.0 for e in failed[3:])
    with store.reading() as session:
        emails = session.scalars(select(OutboxRow).order_by(OutboxRow.id)).all()
    assert [e.topic for e in emails] == ["cycles.failing"]  # once, at the 2nd failure
    assert emails[0].recipients == ["admin@example.com"]
    assert "failed 2 times in a row" in emails[0].body

    secret_file.write_text(SECRET + "\n", encoding="utf-8")  # fixed: read again each cycle
    wait_for("recovery", lambda: (h := daemon.healthz()) and h[1]["status"] == "ok", timeout=15)

    def topics() -> list[str]:
        with store.reading() as session:
            return [e.topic for e in session.scalars(select(OutboxRow).order_by(OutboxRow.id))]

    # /healthz turns ok as the cycle ends; the recovery email is recorded right after it
    wait_for("recovery email", lambda: len(topics()) == 2, timeout=10)
    assert topics() == ["cycles.failing", "cycles.recovered"]
    assert _healthcheck(world.daemon_config(daemon)).returncode == 0
    metrics = daemon.metrics()
    assert _metric(metrics, 'entrasync_cycles_total{outcome="failed"}') >= 3
    assert _metric(metrics, "entrasync_consecutive_failures") == 0

    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(timeout=10) == 0
    store.engine.dispose()


def test_healthcheck_without_a_daemon_fails(tmp_path: Path) -> None:
    from daemonworld import free_port

    config = tmp_path / "c.toml"
    config.write_text(f'[daemon]\nlisten = "127.0.0.1:{free_port()}"\n', encoding="utf-8")
    result = _healthcheck(config)
    assert result.returncode == 1
    assert "daemon not reachable" in result.stdout


def test_leader_runs_pending_retention_and_sends_the_outbox(sqlite_world: DaemonWorld) -> None:
    from daemonworld import smtp_server

    world = sqlite_world
    path = world.config_path
    with smtp_server() as (port, mailbox):
        text = path.read_text().replace(
            "purchased_licenses = 100",
            "purchased_licenses = 100\npending_mode = true\nmanual_review = true",
        )
        text = text.replace(
            "[notify]\n", f'[notify]\nsmtp_host = "127.0.0.1"\nsmtp_port = {port}\n'
        )
        path.write_text(text, encoding="utf-8")
        store = world.store()
        old = (datetime.now(UTC) - timedelta(days=60)).strftime("%Y-%m-%dT%H:%M:%SZ")
        line = report("CONTOSO\\newbie", "PC", upn="newbie@contoso.com", events=3, start=old)
        ingest_reports(store, load_config(path), parse_reports([line]), datetime.now(UTC), "test")
        with store.reading() as session:
            queued = [e.subject for e in session.scalars(select(OutboxRow))]
        assert len(queued) == 1  # "a user is waiting in the pending queue"

        daemon = world.start("a")
        wait_for("the outbox to be sent", lambda: mailbox.messages, timeout=10)
        assert mailbox.messages == [(["admin@example.com"], queued[0])]
        expired = daemon.wait_event("pending retention", timeout=15)
        assert expired["rows_deleted"] == 3 and expired["users"] == 1
        with store.reading() as session:
            actions = [r.action for r in session.scalars(select(AuditRow))]
            sent = [e.sent_at for e in session.scalars(select(OutboxRow))]
        assert "pending.expired" in actions
        assert all(sent)
        assert _metric(daemon.metrics(), "entrasync_pending_rows_expired_total") == 3
        assert _metric(daemon.metrics(), "entrasync_outbox_sent_total") == 1
        daemon.signal(signal.SIGTERM)
        assert daemon.wait_exit(timeout=10) == 0
        store.engine.dispose()
