"""`entrasync status`: a read command (it shows the stored state and writes nothing)."""

from __future__ import annotations

import json
from typing import Any

import typer

from entrasync.cli.context import app_context, now
from entrasync.cli.options import JsonOpt
from entrasync.cli.output import print_json, say
from entrasync.services.status import StatusView
from entrasync.services.status import status as status_view
from entrasync.store.forwarding import Backlog


def status(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Licenses used/purchased, pending count, compliance and the last run, as stored.

    Writes nothing (it works on a read-only store); says when [account] in the config
    file differs from the stored settings, which the next writer applies.

    Example: entrasync status --json
    """
    actx = app_context(ctx)
    view = status_view(actx.reader(), actx.config, now())
    if as_json:
        print_json(view.as_dict())
    else:
        _print(view)


def _print(view: StatusView) -> None:
    licenses, grace_ends = view.licenses, view.grace_ends
    say(f"licenses   {licenses.used}/{licenses.purchased} used")
    say(f"pending    {licenses.pending}")
    line = licenses.compliance.state.value
    say(f"compliance {line}" + (f" (grace period ends {grace_ends})" if grace_ends else ""))
    if view.settings_differ:
        say(f"settings   {_differ_line(view.settings_differ)}")
    last_run = view.last_run
    if last_run:
        say(f"last run   {last_run['id']} {last_run['status']} at {last_run['started_at']}")
    else:
        say("last run   none yet")
    for g in view.suspect:
        say(f"SUSPECT    {g.detail} (since {g.since:%Y-%m-%d %H:%M} UTC)" if g.since else "")
        say(f"           accept the read with: entrasync groups accept {g.id}")
    if view.forward is not None:
        say(f"audit      {_forward_line(view.forward)}")
    say(f"daemon     {_daemon_line(view.daemon)}")
    for job, at in sorted(view.daemon["jobs"].items()):
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


def _forward_line(backlog: Backlog) -> str:
    if not backlog.waiting:
        return f"forwarded to {backlog.target} up to record {backlog.delivered_seq}"
    line = f"{backlog.waiting} record(s) waiting for {backlog.target}"
    if backlog.failing_since is not None:
        line += f" (failing since {backlog.failing_since:%Y-%m-%d %H:%M} UTC: {backlog.last_error})"
    return line


def _daemon_line(daemon: dict[str, Any]) -> str:
    instances = daemon["instances"]
    if not instances:
        return "not running (no `entrasync run` heartbeat in the last 45 s)"
    return ", ".join(f"{i['instance']} {i['role']}" for i in instances)
