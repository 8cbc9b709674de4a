"""The shape every audited admin command shares: on the writable store, as the named
administrator, now; `--dry-run` shows the change, `--json` prints the result, and an
irreversible one asks first (`--yes` skips the question)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import typer

from entrasync.cli.context import actor_name, app_context, now
from entrasync.cli.options import ActorOpt, DryRunOpt, IdentArg, JsonOpt, YesOpt
from entrasync.cli.prompts import confirm

R = TypeVar("R")
Command = Callable[..., None]
Report = Callable[[R, bool], None]


def admin_call(
    ctx: typer.Context, action: Callable[..., R], *args: Any, actor: str | None, dry_run: bool
) -> R:
    """Run an action of entrasync.services (users, pending) with the store, the config, the
    administrator and the time."""
    actx = app_context(ctx)
    return action(
        actx.store(), actx.config, *args, actor=actor_name(actor), now=now(), dry_run=dry_run
    )


def ident_command(action: Callable[..., R], report: Report[R], doc: str) -> Command:
    """`COMMAND IDENT [--dry-run] [--actor] [--json]`: `action` on one user; `doc` is its
    --help."""

    def command(
        ctx: typer.Context,
        ident: IdentArg,
        dry_run: DryRunOpt = False,
        actor: ActorOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        report(admin_call(ctx, action, ident, actor=actor, dry_run=dry_run), as_json)

    command.__doc__ = doc
    return command


def confirmed_command(
    action: Callable[..., R], report: Report[R], doc: str, question: str
) -> Command:
    """As `ident_command`, for an irreversible action: asks `question` (formatted with
    `ident`) first, unless --yes or --dry-run."""

    def command(
        ctx: typer.Context,
        ident: IdentArg,
        yes: YesOpt = False,
        dry_run: DryRunOpt = False,
        actor: ActorOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        confirm(question.format(ident=ident), yes, dry_run)
        report(admin_call(ctx, action, ident, actor=actor, dry_run=dry_run), as_json)

    command.__doc__ = doc
    return command
