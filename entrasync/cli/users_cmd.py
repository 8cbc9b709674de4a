"""`entrasync users show|list|untrack|track|purge|merge`."""

from __future__ import annotations

import csv
import sys
from typing import Annotated, Any

import typer

from entrasync.cli.admin import admin_call, confirmed_command, ident_command
from entrasync.cli.context import app_context
from entrasync.cli.options import ActorOpt, DryRunOpt, IdentArg, JsonOpt, YesOpt
from entrasync.cli.output import print_json, print_list, say
from entrasync.cli.prompts import confirm
from entrasync.services import users as service

users_app = typer.Typer(
    help="Look at users and act on them (audited).\n\nExample: entrasync users list --csv",
    no_args_is_help=True,
)

_COLUMNS = ["id", "identifiers", "tracking", "status", "agents", "rows", "licenses"]
_CSV_COLUMNS = ["id", "tracking", "status", "identifiers", "agents", "activity_rows", "licenses"]


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


@users_app.command("show")
def show(ctx: typer.Context, ident: IdentArg, as_json: JsonOpt = False) -> None:
    """A user's identifiers, tracking, agents and licenses.

    Example: entrasync users show jdoe@contoso.com --json
    """
    view = service.show_user(app_context(ctx).reader(), ident)
    if as_json:
        print_json(view)
        return
    _print_user(view)


@users_app.command("list")
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
    if as_csv and not as_json:  # --json wins
        _print_csv(rows)
    else:
        print_list(rows, as_json, _COLUMNS, _table_row)


users_app.command("untrack")(
    ident_command(
        service.untrack,
        _report,
        """Stop collecting data for a user (history is kept and still uses licenses).

        Example: entrasync users untrack jdoe@contoso.com
        """,
    )
)
users_app.command("track")(
    ident_command(
        service.track,
        _report,
        """Collect data for a user again.

        Example: entrasync users track jdoe@contoso.com
        """,
    )
)
users_app.command("purge")(
    confirmed_command(
        service.purge,
        _report,
        """Delete a user's history and agents (frees their licenses); IRREVERSIBLE.

        The user record and identifiers stay, Untracked, so the person is not tracked again.

        Example: entrasync users purge jdoe@contoso.com --dry-run
        """,
        "Purge all history of {ident}? This cannot be undone",
    )
)


@users_app.command("merge")
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
    confirm(f"Merge {source} into {target}?", yes, dry_run)
    result = admin_call(ctx, service.merge, source, target, actor=actor, dry_run=dry_run)
    _report(result, as_json)


def _table_row(r: dict[str, Any]) -> list[Any]:
    idents = ", ".join(i["value"] for i in r["identifiers"] if i["kind"] != "logon")
    return [r["id"], idents, r["tracking"], r["status"], *_counts(r)]


def _counts(r: dict[str, Any]) -> list[Any]:
    return [len(r["agents"]), r["activity_rows"], r["licenses"]]


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
    writer.writerow(_CSV_COLUMNS)
    for r in rows:
        idents = ";".join(f"{i['kind']}:{i['value']}" for i in r["identifiers"])
        writer.writerow([r["id"], r["tracking"], r["status"], idents, *_counts(r)])
