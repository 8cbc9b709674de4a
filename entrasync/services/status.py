"""What `entrasync status` shows, composed from the stored state in one read-only snapshot:
licenses and compliance, whether the file's [account] differs from the stored settings, the
latest run, the daemon's instances, the watched groups whose read is suspect, and how far the
audit collector (`audit.forward`) is behind."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from entrasync.config import Config
from entrasync.services.audit_forward import backlog_view
from entrasync.store import forwarding, runs
from entrasync.store.account import LicenseStatus, license_status, settings_differ
from entrasync.store.daemon_state import daemon_summary
from entrasync.store.db import Store
from entrasync.store.schema import RunRow
from entrasync.sync.groups import GroupStatus, list_groups


@dataclass(frozen=True)
class StatusView:
    licenses: LicenseStatus
    settings_differ: dict[str, dict[str, Any]]
    last_run: dict[str, Any] | None
    daemon: dict[str, Any]
    suspect: list[GroupStatus]
    forward: forwarding.Backlog | None = None

    @property
    def grace_ends(self) -> str | None:
        ends = self.licenses.compliance.grace_ends
        return ends.isoformat() if ends else None

    def as_dict(self) -> dict[str, Any]:
        """The `status --json` document."""
        licenses = self.licenses
        view: dict[str, Any] = {
            "licenses": {
                "used": licenses.used,
                "purchased": licenses.purchased,
                "pending": licenses.pending,
            },
            "compliance": licenses.compliance.state.value,
            "grace_ends": self.grace_ends,
            "last_run": self.last_run,
            "suspect_groups": [
                {"id": g.id, "name": g.name, "kind": g.kind, "detail": g.detail}
                for g in self.suspect
            ],
            "settings_differ": self.settings_differ,
        }
        if self.forward is not None:
            view["audit_forward"] = backlog_view(self.forward)
        if self.daemon["instances"]:  # only while an `entrasync run` is alive
            view["daemon"] = self.daemon
        return view


def status(store: Store, config: Config, now: datetime) -> StatusView:
    """Writes nothing, so it works on a read-only store."""
    target = config.audit.forward_target
    with store.reading() as session:
        licenses = license_status(session, now)
        differ = settings_differ(session, config.account)
        last = runs.latest(session)
        return StatusView(
            licenses=licenses,
            settings_differ=differ,
            last_run=_run_view(last) if last else None,
            daemon=daemon_summary(session, now),
            suspect=[g for g in list_groups(session, config) if g.state == "suspect"],
            forward=forwarding.backlog(session, target.display) if target else None,
        )


def _run_view(run: RunRow) -> dict[str, Any]:
    return {
        "id": run.id,
        "kind": run.kind,
        "status": run.status,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "resync": run.resync,
        "graph_requests": run.graph_requests,
        "counts": run.counts,
        "held": run.held,
        "message": run.message,
        "suspect_groups": run.suspect or {},
    }
