"""`entrasync status`: a read command (it shows the stored state and writes nothing)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from sqlalchemy import select

from entrasync.cli.context import app_context, now
from entrasync.cli.output import print_json, say
from entrasync.daemon.state import daemon_summary
from entrasync.store.account import license_status, settings_differ
from entrasync.store.schema import RunRow
from entrasync.sync.groups import list_groups


def register(app: typer.Typer) -> None:
    @app.command("status")
    def status(
        ctx: typer.Context,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """Licenses used/purchased, pending count, compliance and the last run, as stored.

        Writes nothing (it works on a read-only store); says when [account] in the config
        file differs from the stored settings, which the next writer applies.

        Example: entrasync status --json
        """
        actx = app_context(ctx)
        moment = now()
        with actx.reader().reading() as session:
            licenses = license_status(session, moment)
            differ = settings_differ(session, actx.config.account)
            last = session.scalar(select(RunRow).order_by(RunRow.started_at.desc()).limit(1))
            last_run = _run_view(last) if last else None
            daemon = daemon_summary(session, moment)
            suspect = [g for g in list_groups(session, actx.config) if g.state == "suspect"]
        state = licenses.compliance
        grace_ends = state.grace_ends.isoformat() if state.grace_ends else None
        if as_json:
            view: dict[str, Any] = {
                "licenses": {
                    "used": licenses.used,
                    "purchased": licenses.purchased,
                    "pending": licenses.pending,
                },
                "compliance": state.state.value,
                "grace_ends": grace_ends,
                "last_run": last_run,
                "suspect_groups": [
                    {"id": g.id, "name": g.name, "kind": g.kind, "detail": g.detail}
                    for g in suspect
                ],
                "settings_differ": differ,
            }
            if daemon["instances"]:  # only while an `entrasync run` is alive
                view["daemon"] = daemon
            print_json(view)
            return
        say(f"licenses   {licenses.used}/{licenses.purchased} used")
        say(f"pending    {licenses.pending}")
        line = state.state.value + (f" (grace period ends {grace_ends})" if grace_ends else "")
        say(f"compliance {line}")
        if differ:
            say(f"settings   {_differ_line(differ)}")
        if last_run:
            say(f"last run   {last_run['id']} {last_run['status']} at {last_run['started_at']}")
        else:
            say("last run   none yet")
        for g in suspect:
            say(f"SUSPECT    {g.detail} (since {g.since:%Y-%m-%d %H:%M} UTC)" if g.since else "")
            say(f"           accept the read with: entrasync groups accept {g.id}")
        say(f"daemon     {_daemon_line(daemon)}")
        for job, at in sorted(daemon["jobs"].items()):
            say(f"  next {job:<10} {at or 'paused'}")


def _differ_line(differ: dict[str, dict[str, Any]]) -> str:
    changes = ", ".join(
        f"{name} {json.dumps(v['stored'])} -> {json.dumps(v['config'])}"
        for name, v in differ.items()
    )
    return (
        "[account] differs from the stored settings (the figures above are the stored ones; "
        f"the next sync, ingest, admin action or `db upgrade` applies the file): {changes}"
    )


def _daemon_line(daemon: dict[str, Any]) -> str:
    instances = daemon["instances"]
    if not instances:
        return "not running (no `entrasync run` heartbeat in the last 45 s)"
    return ", ".join(f"{i['instance']} {i['role']}" for i in instances)


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
