"""`entrasync pending list|approve|assign|merge|remove|expire`: the Pending Licenses queue."""

from __future__ import annotations

from typing import Annotated

import typer

from entrasync.cli.context import actor_name, app_context, now
from entrasync.cli.output import print_json, print_table, say
from entrasync.cli.users_cmd import ActorOpt, DryRunOpt, IdentArg, JsonOpt, YesOpt, _confirm
from entrasync.services import pending as service


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
        and key not in {"licenses_purchased", "waited_s"}
    ]
    suffix = f" (audit record {result.audit_seq})" if result.audit_seq else ""
    say(
        f"{prefix} {result.action} to user {result.user_id}: {', '.join([*facts, licenses])}{suffix}"
    )


def register(app: typer.Typer) -> None:
    pending = typer.Typer(
        help=(
            "The Pending Licenses queue: new users waiting for a license (audited actions)."
            "\n\nExample: entrasync pending list"
        ),
        no_args_is_help=True,
    )
    app.add_typer(pending, name="pending")

    @pending.command("list")
    def list_(ctx: typer.Context, as_json: JsonOpt = False) -> None:
        """Users waiting for a license: how long they have waited and the data they hold.

        Example: entrasync pending list --json
        """
        entries = service.list_pending(app_context(ctx).reader(), now())
        if as_json:
            print_json([entry.as_dict() for entry in entries])
            return
        if not entries:
            say("the pending queue is empty")
            return
        print_table(
            None,
            ["id", "identifiers", "waiting", "agents", "rows", "licenses needed", "tracking"],
            [
                [
                    e.id,
                    ", ".join(i["value"] for i in e.identifiers if i["kind"] != "logon")
                    or ", ".join(i["value"] for i in e.identifiers),
                    e.as_dict()["waiting"],
                    e.agents,
                    e.activity_rows,
                    e.licenses_needed,
                    e.tracking,
                ]
                for e in entries
            ],
        )

    @pending.command("approve")
    def approve(
        ctx: typer.Context,
        ident: IdentArg,
        dry_run: DryRunOpt = False,
        actor: ActorOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Give a pending user their license(s). Fails (exit 1) when no license is free.

        Example: entrasync pending approve jdoe@contoso.com
        """
        actx = app_context(ctx)
        result = service.approve(
            actx.store(), actx.config, ident, actor=actor_name(actor), now=now(), dry_run=dry_run
        )
        _report(result, as_json)

    @pending.command("assign")
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
        actx = app_context(ctx)
        _confirm(f"Assign pending user {ident} to {to}? This cannot be undone", yes, dry_run)
        result = service.assign(
            actx.store(),
            actx.config,
            ident,
            to,
            actor=actor_name(actor),
            now=now(),
            dry_run=dry_run,
        )
        _report(result, as_json)

    @pending.command("merge")
    def merge(
        ctx: typer.Context,
        ident: IdentArg,
        into_agent: Annotated[
            int,
            typer.Option(
                "--into-agent", help="Id of the existing agent (see `entrasync users show`)."
            ),
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
        actx = app_context(ctx)
        _confirm(
            f"Merge pending user {ident} into agent {into_agent}? This cannot be undone",
            yes,
            dry_run,
        )
        result = service.merge(
            actx.store(),
            actx.config,
            ident,
            into_agent,
            actor=actor_name(actor),
            now=now(),
            dry_run=dry_run,
        )
        _report(result, as_json)

    @pending.command("remove")
    def remove(
        ctx: typer.Context,
        ident: IdentArg,
        yes: YesOpt = False,
        dry_run: DryRunOpt = False,
        actor: ActorOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Purge a pending user's data and keep their identifiers Untracked, so their later
        reports are dropped; IRREVERSIBLE.

        Example: entrasync pending remove contractor@example.org --yes
        """
        actx = app_context(ctx)
        _confirm(f"Remove pending user {ident} and purge their data?", yes, dry_run)
        result = service.remove(
            actx.store(), actx.config, ident, actor=actor_name(actor), now=now(), dry_run=dry_run
        )
        _report(result, as_json)

    @pending.command("expire")
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
