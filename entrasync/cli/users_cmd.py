"""`entrasync users show|list|untrack|track|purge|merge`."""

from __future__ import annotations

import csv
import sys
from typing import Annotated, Any

import typer

from entrasync.cli.context import actor_name, app_context, now
from entrasync.cli.output import print_json, print_table, say
from entrasync.errors import EntrasyncError, ExitCode
from entrasync.services import users as service

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Show what would change; change nothing.")
]
ActorOpt = Annotated[
    str | None,
    typer.Option("--actor", help="Administrator name for the audit log (default: login name)."),
]
IdentArg = Annotated[
    str, typer.Argument(help="UPN, email, employee id, DOMAIN\\user logon, or store id.")
]


class ConfirmationRequired(EntrasyncError):
    exit_code = ExitCode.USAGE


def _confirm(question: str, yes: bool, dry_run: bool) -> None:
    if yes or dry_run:
        return
    if not sys.stdin.isatty():
        raise ConfirmationRequired(
            f"{question} — not confirmed: add --yes to run without a terminal"
        )
    if not typer.confirm(question, default=False):
        raise typer.Exit(int(ExitCode.FAILURE))


def _report(result: service.ActionResult, as_json: bool) -> None:
    if as_json:
        print_json(
            {
                "action": result.action,
                "user_id": result.user_id,
                "applied": result.applied,
                "details": result.details,
                "audit_seq": result.audit_seq,
            }
        )
        return
    prefix = "would apply" if not result.applied else "applied"
    details = ", ".join(f"{k}={v}" for k, v in result.details.items() if not isinstance(v, dict))
    suffix = f" (audit record {result.audit_seq})" if result.audit_seq else ""
    say(f"{prefix} {result.action} to user {result.user_id}: {details}{suffix}")


def register(app: typer.Typer) -> None:
    users = typer.Typer(
        help="Look at users and act on them (audited).\n\nExample: entrasync users list --csv",
        no_args_is_help=True,
    )
    app.add_typer(users, name="users")

    @users.command("show")
    def show(ctx: typer.Context, ident: IdentArg, as_json: JsonOpt = False) -> None:
        """A user's identifiers, tracking, agents and licenses.

        Example: entrasync users show jdoe@contoso.com --json
        """
        view = service.show_user(app_context(ctx).reader(), ident)
        if as_json:
            print_json(view)
            return
        _print_user(view)

    @users.command("list")
    def list_(
        ctx: typer.Context,
        as_json: JsonOpt = False,
        as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV.")] = False,
        tracking: Annotated[str | None, typer.Option(help="tracked or untracked")] = None,
        status: Annotated[str | None, typer.Option(help="active or pending")] = None,
    ) -> None:
        """Every user record (merged records are shown through their survivor).

        Example: entrasync users list --tracking untracked --csv > untracked.csv
        """
        rows = service.list_users(app_context(ctx).reader(), tracking=tracking, status=status)
        if as_json:
            print_json(rows)
        elif as_csv:
            _print_csv(rows)
        else:
            print_table(
                None,
                ["id", "identifiers", "tracking", "status", "agents", "rows", "licenses"],
                [
                    [
                        r["id"],
                        ", ".join(i["value"] for i in r["identifiers"] if i["kind"] != "logon"),
                        r["tracking"],
                        r["status"],
                        len(r["agents"]),
                        r["activity_rows"],
                        r["licenses"],
                    ]
                    for r in rows
                ],
            )

    @users.command("untrack")
    def untrack(
        ctx: typer.Context,
        ident: IdentArg,
        dry_run: DryRunOpt = False,
        actor: ActorOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Stop collecting data for a user (history is kept and still uses licenses).

        Example: entrasync users untrack jdoe@contoso.com
        """
        actx = app_context(ctx)
        result = service.untrack(
            actx.store(), actx.config, ident, actor=actor_name(actor), now=now(), dry_run=dry_run
        )
        _report(result, as_json)

    @users.command("track")
    def track(
        ctx: typer.Context,
        ident: IdentArg,
        dry_run: DryRunOpt = False,
        actor: ActorOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Collect data for a user again.

        Example: entrasync users track jdoe@contoso.com
        """
        actx = app_context(ctx)
        result = service.track(
            actx.store(), actx.config, ident, actor=actor_name(actor), now=now(), dry_run=dry_run
        )
        _report(result, as_json)

    @users.command("purge")
    def purge(
        ctx: typer.Context,
        ident: IdentArg,
        yes: YesOpt = False,
        dry_run: DryRunOpt = False,
        actor: ActorOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Delete a user's history and agents (frees their licenses); IRREVERSIBLE.

        The user record and identifiers stay, Untracked, so the person is not tracked again.

        Example: entrasync users purge jdoe@contoso.com --dry-run
        """
        actx = app_context(ctx)
        _confirm(f"Purge all history of {ident}? This cannot be undone", yes, dry_run)
        result = service.purge(
            actx.store(), actx.config, ident, actor=actor_name(actor), now=now(), dry_run=dry_run
        )
        _report(result, as_json)

    @users.command("merge")
    def merge(
        ctx: typer.Context,
        source: Annotated[str, typer.Argument(help="The duplicate record (it disappears).")],
        target: Annotated[str, typer.Argument(help="The record that survives.")],
        yes: YesOpt = False,
        dry_run: DryRunOpt = False,
        actor: ActorOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Merge SOURCE into TARGET: identifiers and agents move (agents merged per
        merge.agent_merge), so the person holds one license.

        Example: entrasync users merge jdoe@oldco.com jdoe@newco.com --dry-run
        """
        actx = app_context(ctx)
        _confirm(f"Merge {source} into {target}?", yes, dry_run)
        result = service.merge(
            actx.store(),
            actx.config,
            source,
            target,
            actor=actor_name(actor),
            now=now(),
            dry_run=dry_run,
        )
        _report(result, as_json)


def _print_user(view: dict[str, Any]) -> None:
    say(f"user {view['id']}  {view['tracking']}, {view['status']}, licenses: {view['licenses']}")
    if view["entra_object_id"]:
        say(f"  entra object  {view['entra_object_id']}")
    for ident in view["identifiers"]:
        say(f"  {ident['kind']:<12}  {ident['value']}")
    for ident in view.get("retired_identifiers", []):
        say(f"  retired {ident['kind']:<4}  {ident['value']} (since {ident['retired_at'][:16]})")
    for agent in view["agents"]:
        say(f"  agent {agent['id']}: {', '.join(agent['logons'])} ({agent['activity_rows']} rows)")


def _print_csv(rows: list[dict[str, Any]]) -> None:
    writer = csv.writer(sys.stdout)
    writer.writerow(
        ["id", "tracking", "status", "identifiers", "agents", "activity_rows", "licenses"]
    )
    for r in rows:
        idents = ";".join(f"{i['kind']}:{i['value']}" for i in r["identifiers"])
        writer.writerow(
            [
                r["id"],
                r["tracking"],
                r["status"],
                idents,
                len(r["agents"]),
                r["activity_rows"],
                r["licenses"],
            ]
        )
