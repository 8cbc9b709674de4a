"""`entrasync db upgrade|check-tally`."""

from __future__ import annotations

from typing import Annotated

import typer

from entrasync.cli.context import actor_name, app_context, now
from entrasync.cli.options import ActorOpt, JsonOpt
from entrasync.cli.output import print_json, say
from entrasync.errors import ExitCode
from entrasync.services import tally
from entrasync.services.tally import TallyCheck

db_app = typer.Typer(
    help="Database schema management and the license tally check.\n\nExample: entrasync db upgrade",
    no_args_is_help=True,
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


@db_app.command("check-tally")
def check_tally(
    ctx: typer.Context,
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Set the tally to the count when they differ (audited as tally.repaired).",
        ),
    ] = False,
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Compare the maintained license tally (licenses in use, live records) with a full count
    of the store: exit 0 when they agree, 1 when they differ. Read-only (it works on a
    read-only store) unless --repair, which sets the tally to the count, audited.

    Example: entrasync db check-tally --repair
    """
    actx = app_context(ctx)
    if repair:
        result = tally.repair(actx.store(), actx.config, now(), actor_name(actor))
    else:
        result = tally.check(actx.reader())
    if as_json:
        print_json(result.as_dict())
    else:
        _say_check(result, repair)
    if not result.agree and not result.repaired:
        raise typer.Exit(int(ExitCode.FAILURE))


def _say_check(result: TallyCheck, repair: bool) -> None:
    kept, counted = result.maintained, result.counted
    say(f"{'':<16}{'maintained':>12}{'counted':>12}")
    say(f"{'licenses in use':<16}{kept.used if kept else '-':>12}{counted.used:>12}")
    say(f"{'live records':<16}{kept.live_users if kept else '-':>12}{counted.live_users:>12}")
    if result.repaired:
        say("tally repaired: set to the counted figures (audited as tally.repaired)")
    elif kept is None:
        say("no maintained tally yet: the next writer counts the store once")
    elif result.agree:
        say("tally agrees with the store" + (": nothing to repair" if repair else ""))
    else:
        say(
            "tally DIFFERS from the store: run `entrasync db check-tally --repair` to set it "
            "to the counted figures (audited)"
        )
