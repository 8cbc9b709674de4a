"""`entrasync db upgrade`."""

from __future__ import annotations

import typer

from entrasync.cli.context import app_context, now
from entrasync.cli.output import say

db_app = typer.Typer(
    help="Database schema management.\n\nExample: entrasync db upgrade", no_args_is_help=True
)


@db_app.command("upgrade")
def upgrade(ctx: typer.Context) -> None:
    """Apply schema migrations (safe to run again; run it after every upgrade).

    Example: entrasync --config /etc/entrasync/entrasync.toml db upgrade
    """
    actx = app_context(ctx)
    store = actx.store(check_schema=False)
    before, after = store.upgrade()
    # a writer: it applies [account] (DESIGN.md)
    with store.unit_of_work(now()) as uow:
        uow.account(actx.config.account)
    if before == after:
        say(f"store schema is current (revision {after})")
    else:
        say(f"store schema upgraded from {before or 'empty'} to revision {after}")
