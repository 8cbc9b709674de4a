"""Prometheus metrics of the daemon (own registry: nothing global, no default collectors
beyond the process ones)."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

OUTCOMES = ("ok", "held", "dry-run", "failed")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self._cycle_metrics()
        self._store_metrics()
        self._role_metrics()
        self._audit_metrics()

    def _cycle_metrics(self) -> None:
        r = self.registry
        self.cycles = Counter(
            "entrasync_cycles", "Scheduled sync cycles by outcome.", ["outcome"], registry=r
        )
        for outcome in OUTCOMES:
            self.cycles.labels(outcome)
        self.actions = Counter(
            "entrasync_actions",
            "Actions applied by scheduled cycles, by kind.",
            ["kind"],
            registry=r,
        )
        self.held = Counter(
            "entrasync_held_actions",
            "Actions held by a safety threshold, by kind.",
            ["kind"],
            registry=r,
        )
        self.graph_requests = Counter(
            "entrasync_graph_requests",
            "HTTP attempts to Graph (api=graph) and the identity platform (api=login), by "
            "status (error = connection failure or timeout).",
            ["api", "status"],
            registry=r,
        )
        self.duration = Histogram(
            "entrasync_cycle_duration_seconds",
            "Duration of scheduled sync cycles (failed ones included).",
            buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
            registry=r,
        )

    def _store_metrics(self) -> None:
        r = self.registry
        self.licenses_used = Gauge(
            "entrasync_licenses_used", "Licenses in use (agents holding history).", registry=r
        )
        self.licenses_purchased = Gauge(
            "entrasync_licenses_purchased", "Licenses the account may use.", registry=r
        )
        self.licenses_pending = Gauge(
            "entrasync_licenses_pending", "Users waiting in the pending queue.", registry=r
        )
        self.emails_sent = Counter(
            "entrasync_outbox_sent", "Admin emails accepted by the SMTP server.", registry=r
        )
        self.retention_rows = Counter(
            "entrasync_pending_rows_expired",
            "Pending users' activity rows deleted by retention.",
            registry=r,
        )

    def _role_metrics(self) -> None:
        r = self.registry
        self.last_success = Gauge(
            "entrasync_last_success_timestamp_seconds",
            "Unix time of the last successful sync cycle (0 = none yet).",
            registry=r,
        )
        self.consecutive_failures = Gauge(
            "entrasync_consecutive_failures", "Failed cycles since the last success.", registry=r
        )
        self.suspect = Gauge(
            "entrasync_watched_group_suspect",
            "1 while a watched group's read is suspect (nothing is derived from it).",
            ["group", "kind"],
            registry=r,
        )
        self.leader = Gauge(
            "entrasync_leader", "1 when this instance is the leader, 0 on standby.", registry=r
        )

    def _audit_metrics(self) -> None:
        r = self.registry
        self.forward_backlog = Gauge(
            "entrasync_audit_forward_backlog",
            "Audit records the collector (audit.forward) has not received yet.",
            registry=r,
        )
        self.forwarded = Counter(
            "entrasync_audit_forwarded_records",
            "Audit records delivered to the collector (a record sent again counts again).",
            registry=r,
        )
        self.forward_failures = Counter(
            "entrasync_audit_forward_failures",
            "Failed attempts to deliver audit records to the collector.",
            registry=r,
        )

    def count_forwarded(self, sent: int, backlog: int) -> None:
        self.forwarded.inc(sent)
        self.forward_backlog.set(backlog)

    def count_cycle(
        self,
        outcome: str,
        seconds: float,
        applied: Mapping[str, int],
        held: Mapping[str, int],
        requests: Mapping[tuple[str, str], int],
    ) -> None:
        self.cycles.labels(outcome).inc()
        self.duration.observe(seconds)
        for kind, n in applied.items():
            self.actions.labels(kind).inc(n)
        for kind, n in held.items():
            self.held.labels(kind).inc(n)
        for (api, status), n in requests.items():
            self.graph_requests.labels(api, status).inc(n)

    def set_licenses(self, used: int, purchased: int, pending: int) -> None:
        self.licenses_used.set(used)
        self.licenses_purchased.set(purchased)
        self.licenses_pending.set(pending)

    def set_suspect(self, groups: list[tuple[str, str, bool]]) -> None:
        """(group id, kind, suspect) for every configured group."""
        for group, kind, suspect in groups:
            self.suspect.labels(group, kind).set(1 if suspect else 0)

    def render(self) -> bytes:
        return generate_latest(self.registry)
