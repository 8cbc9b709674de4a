"""`entrasync pending list|approve|assign|merge|remove|expire`: the Pending Licenses queue."""

from __future__ import annotations

from typing import Annotated

import typer

from entrasync.cli.admin import admin_call, confirmed_command, ident_command
from entrasync.cli.context import actor_name, app_context, now
from entrasync.cli.options import ActorOpt, DryRunOpt, IdentArg, JsonOpt, YesOpt
from entrasync.cli.output import print_json, print_list, say
from entrasync.cli.prompts import confirm
from entrasync.services import pending as service

pending_app = typer.Typer(
    help=(
        "The Pending Licenses queue: new users waiting for a license (audited actions)."
        "\n\nExample: entrasync pending list"
    ),
    no_args_is_help=True,
)

_COLUMNS = ["id", "identifiers", "waiting", "agents", "rows", "licenses needed", "tracking"]
# Shown apart (the licenses line) or not at all (the wait is in `pending list`).
_NOT_FACTS = {"licenses_purchased", "waited_s"}


def _report(result: service.PendingResult, as_json: bool) -> None:
    if as_json:
        print_json(result.as_dict())
        return
    prefix = "applied" if result.applied else "would apply"
    details = result.details
    licenses = (
        f"licenses used {details['licenses_used_before']} -> {details['licenses_used_after']}"
        f" of {details['licenses_purchased']}"
    )
    facts = [
        f"{key}={value}"
        for key, value in details.items()
        if isinstance(value, int | str | list)
        and not key.startswith("licenses_used")
        and key not in _NOT_FACTS
    ]
    suffix = f" (audit record {result.audit_seq})" if result.audit_seq else ""
    say(
        f"{prefix} {result.action} to user {result.user_id}: {', '.join([*facts, licenses])}{suffix}"
    )


def _row(e: service.PendingEntry) -> list[object]:
    names = ", ".join(i["value"] for i in e.identifiers if i["kind"] != "logon")
    names = names or ", ".join(i["value"] for i in e.identifiers)
    waiting = e.as_dict()["waiting"]
    return [e.id, names, waiting, e.agents, e.activity_rows, e.licenses_needed, e.tracking]


@pending_app.command("list")
def list_(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Users waiting for a license: how long they have waited and the data they hold.

    Example: entrasync pending list --json
    """
    entries = service.list_pending(app_context(ctx).reader(), now())
    print_list(
        entries, as_json, _COLUMNS, _row, service.PendingEntry.as_dict, "the pending queue is empty"
    )


pending_app.command("approve")(
    ident_command(
        service.approve,
        _report,
        """Give a pending user their license(s). Fails (exit 1) when no license is free.

        Example: entrasync pending approve jdoe@contoso.com
        """,
    )
)


@pending_app.command("assign")
def assign(
    ctx: typer.Context,
    ident: IdentArg,
    to: Annotated[str, typer.Option("--to", help="The existing user this person really is.")],
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The pending user is an existing user: identifiers, agents and data join that user
    (agents merged per merge.agent_merge, so usually no new license).

    Example: entrasync pending assign john.doe@newco.com --to jdoe@contoso.com --dry-run
    """
    confirm(f"Assign pending user {ident} to {to}? This cannot be undone", yes, dry_run)
    _report(admin_call(ctx, service.assign, ident, to, actor=actor, dry_run=dry_run), as_json)


@pending_app.command("merge")
def merge(
    ctx: typer.Context,
    ident: IdentArg,
    into_agent: Annotated[
        int,
        typer.Option("--into-agent", help="Id of the existing agent (see `entrasync users show`)."),
    ],
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Fold a pending user's history and logons into an existing agent: no new license.
    The pending record merges into that agent's user.

    Example: entrasync pending merge 'LAPTOP-7\\jdoe' --into-agent 42 --dry-run
    """
    question = f"Merge pending user {ident} into agent {into_agent}? This cannot be undone"
    confirm(question, yes, dry_run)
    result = admin_call(ctx, service.merge, ident, into_agent, actor=actor, dry_run=dry_run)
    _report(result, as_json)


pending_app.command("remove")(
    confirmed_command(
        service.remove,
        _report,
        """Purge a pending user's data and keep their identifiers Untracked, so their later
        reports are dropped; IRREVERSIBLE.

        Example: entrasync pending remove contractor@example.org --yes
        """,
        "Remove pending user {ident} and purge their data?",
    )
)


@pending_app.command("expire")
def expire(
    ctx: typer.Context,
    dry_run: DryRunOpt = False,
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete pending users' activity older than account.pending_retention (default 30d).
    The daemon runs this on its own; this runs it now.

    Example: entrasync pending expire --dry-run
    """
    actx = app_context(ctx)
    result = service.expire_pending_data(
        actx.store(),
        now(),
        actx.config.account.pending_retention,
        dry_run=dry_run,
        actor=actor_name(actor),
    )
    if as_json:
        print_json(result.as_dict())
        return
    verb = "deleted" if result.applied else "would delete"
    say(
        f"{verb} {result.rows_deleted} activity rows of {len(result.users)} pending users "
        f"(events before {result.cutoff.isoformat()})"
    )
