"""What ``/healthz`` answers and systemd's status line says: a snapshot of the daemon's parts,
judged by `health.judge` (no store access: the heartbeat keeps the snapshot fresh)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from entrasync.config import Config
from entrasync.daemon.common import iso, utcnow
from entrasync.daemon.health import judge
from entrasync.daemon.heartbeat import Identity
from entrasync.daemon.metrics import CONTENT_TYPE_LATEST, Metrics
from entrasync.daemon.streak import Streak


@dataclass(frozen=True)
class HealthView:
    settings: Callable[[], Config]
    identity: Identity
    streak: Streak
    metrics: Metrics
    role: Callable[[], str]
    suspect: Callable[[], dict[str, str]]
    next_runs: Callable[[], dict[str, str | None]]
    leader_lock: str

    def health(self) -> tuple[int, dict[str, Any]]:
        now = utcnow()
        streak = self.streak.view()
        interval = self.settings().schedule.interval
        verdict = judge(
            now, interval, self.identity.started_at, streak.last_success, streak.failures
        )
        suspect = self.suspect()
        body = {
            # A suspect watched group: cycles run, but decisions from that group are paused.
            "status": "degraded" if suspect and verdict.status == "ok" else verdict.status,
            "suspect_groups": suspect,
            "healthy": verdict.healthy,
            "reason": verdict.reason,
            "role": self.role(),
            "last_success": iso(streak.last_success),
            "last_failure": iso(streak.last_failure),
            "last_error": streak.last_error,
            "consecutive_failures": streak.failures,
            "interval_s": interval.total_seconds(),
            "instance": self.identity.instance,
            "pid": self.identity.pid,
            "started_at": iso(self.identity.started_at),
            "next_runs": self.next_runs(),
            "leader_lock": self.leader_lock,
        }
        return (200 if verdict.healthy else 503), body

    def render_metrics(self) -> tuple[bytes, str]:
        return self.metrics.render(), CONTENT_TYPE_LATEST

    def status_line(self) -> str:
        _code, body = self.health()
        nxt = body["next_runs"].get("sync")
        text = f"{body['role']}, {body['status']}"
        if body["last_success"]:
            text += f", last success {body['last_success']}"
        if nxt:
            text += f", next sync {nxt}"
        return text
