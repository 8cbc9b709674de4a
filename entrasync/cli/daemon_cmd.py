"""`entrasync run` (the daemon) and `entrasync healthcheck`."""

from __future__ import annotations

from typing import Annotated

import typer

from entrasync.cli.context import app_context
from entrasync.cli.output import print_json, say
from entrasync.config import resolve_config_path


def run_cmd(
    ctx: typer.Context,
    upgrade: Annotated[
        bool,
        typer.Option(
            "--upgrade",
            help="Apply schema migrations first (as `db upgrade`), in the same process: "
            "exit 69 while the store is down, 78 for a configuration error.",
        ),
    ] = False,
) -> None:
    """The daemon: a sync cycle every schedule.interval, pending-data retention daily,
    admin emails every minute, /healthz and /metrics on daemon.listen, leader election
    between instances sharing a store. Stops cleanly on SIGTERM; SIGHUP re-reads the
    config.

    Example: entrasync --config /etc/entrasync/entrasync.toml run --upgrade
    """
    from entrasync.daemon.runner import run_daemon

    actx = app_context(ctx)
    config = actx.config
    code = run_daemon(resolve_config_path(actx.config_path), config, upgrade=upgrade)
    raise typer.Exit(code)


def healthcheck(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option("--url", help="Health URL (default: from daemon.listen)."),
    ] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait.")] = 5.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the daemon's JSON.")] = False,
) -> None:
    """Exit 0 when the local daemon's last successful cycle is recent (GET /healthz
    answers 200), 1 otherwise. For container health checks.

    Example: entrasync healthcheck
    """
    from entrasync.daemon.healthcheck import check, health_url

    target = url or health_url(app_context(ctx).config.daemon.listen)
    result = check(target, timeout)
    if as_json:
        print_json(
            {
                **result.body,
                "healthy": result.healthy,
                "http_status": result.code,
                "problem": result.problem,
            }
        )
    else:
        say(result.summary())
    if not result.healthy:
        raise typer.Exit(1)
