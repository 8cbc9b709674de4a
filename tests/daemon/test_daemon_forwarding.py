"""The daemon forwards the audit log (`audit.forward`) after each cycle and every few seconds:
a collector that dies and comes back gets every record, in order; `/metrics` and `status`
show the backlog meanwhile. Both stores."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from collectors import SyslogCollector
from daemonworld import DaemonWorld, wait_for
from testkit import report

from entrasync.config import load_config
from entrasync.domain.reports import parse_reports
from entrasync.services import audit_forward
from entrasync.services.ingest import ingest_reports
from entrasync.store import forwarding


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match[1])


def _head(world: DaemonWorld) -> int:
    store = world.store()
    try:
        with store.reading() as session:
            return forwarding.backlog(session, "x").head_seq
    finally:
        store.engine.dispose()


def test_a_collector_restart_delays_and_loses_nothing(dworld: DaemonWorld) -> None:
    world = dworld
    collector = SyslogCollector().start()
    try:
        path = world.write_config(extra=f'\n[audit]\nforward = "{collector.url}"\n')
        store = world.store()
        people = [world.tenant.add_user(f"p{i}@contoso.com") for i in range(4)]
        lines = [report(f"CONTOSO\\p{i}", "PC", upn=f"p{i}@contoso.com") for i in range(4)]
        ingest_reports(store, load_config(path), parse_reports(lines), datetime.now(UTC), "t")
        world.tenant.add_members(world.dnt, people[:2])

        daemon = world.start("a")
        daemon.wait_event("audit records forwarded")
        first = _head(world)
        wait_for("every record so far", lambda: collector.seqs()[-1:] == [first])
        # Nothing failed yet: each record exactly once (one forwarding thread at a time).
        assert collector.seqs() == list(range(1, first + 1))
        metrics = daemon.metrics()
        assert _metric(metrics, "entrasync_audit_forward_backlog") == 0
        assert _metric(metrics, "entrasync_audit_forwarded_records_total") >= first

        collector.stop()  # the collector dies; the next cycle writes more records
        world.tenant.add_members(world.dnt, people[2:])
        failed = daemon.wait_event("audit forwarding failed; the records wait in the store")
        assert collector.url in failed["error"]
        wait_for("a backlog", lambda: _head(world) > first)
        wait_for(
            "the backlog in /metrics",
            lambda: _metric(daemon.metrics(), "entrasync_audit_forward_backlog") > 0,
        )
        assert _metric(daemon.metrics(), "entrasync_audit_forward_failures_total") >= 1
        with store.reading() as session:
            assert forwarding.backlog(session, collector.url).waiting > 0

        collector.start()  # back on the same port
        daemon.wait_event("audit forwarding recovered")
        head = _head(world)
        wait_for("every record", lambda: head in collector.seqs())
        assert list(dict.fromkeys(collector.seqs())) == list(range(1, head + 1))
        for connection in collector.connections:
            assert connection == sorted(connection)
        with store.reading() as session:
            backlog = forwarding.backlog(session, collector.url)
        assert backlog.waiting == 0
        assert audit_forward.backlog_view(backlog)["last_error"] is None
        store.engine.dispose()
    finally:
        collector.stop()
