"""The `entrasync` command line: wiring only; the work happens in entrasync.services."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from entrasync.cli import (
    audit_cmd,
    check_config,
    daemon_cmd,
    db_cmd,
    demo_cmd,
    groups_cmd,
    ingest_cmd,
    pending_cmd,
    receipt_cmd,  # noqa: F401 - adds `audit receipt|verify-receipt` to audit_app
    status_cmd,
    sync_cmd,
    users_cmd,
)
from entrasync.cli.context import AppContext

app = typer.Typer(
    name="entrasync",
    help=(
        "Keeps a workforce-analytics license store in line with Microsoft Entra ID.\n\n"
        "Example: entrasync --config /etc/entrasync/entrasync.toml status"
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Config file (default: $ENTRASYNC_CONFIG, else /etc/entrasync/entrasync.toml).",
            show_default=False,
        ),
    ] = None,
) -> None:
    ctx.obj = AppContext(config)


# Commands first, then the groups: the order --help lists them in.
app.command("check-config")(check_config.check_config_cmd)
app.command("run")(daemon_cmd.run_cmd)
app.command("healthcheck")(daemon_cmd.healthcheck)
app.command("demo")(demo_cmd.demo_cmd)
app.command("ingest")(ingest_cmd.ingest)
app.command("status")(status_cmd.status)
app.command("sync")(sync_cmd.sync)
app.command("plan")(sync_cmd.plan_cmd)
app.command("approve")(sync_cmd.approve_cmd)
app.add_typer(audit_cmd.audit_app, name="audit")
app.add_typer(db_cmd.db_app, name="db")
app.add_typer(groups_cmd.groups_app, name="groups")
app.add_typer(pending_cmd.pending_app, name="pending")
app.add_typer(users_cmd.users_app, name="users")
