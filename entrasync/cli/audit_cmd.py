"""`entrasync audit list|show|export|verify`."""

from __future__ import annotations

import csv
import json
import sys
from typing import Annotated, Any

import typer

from entrasync.cli.context import app_context, now
from entrasync.cli.options import BareJsonOpt, JsonOpt
from entrasync.cli.output import print_json, print_list, say
from entrasync.domain.audit import FIELDS
from entrasync.errors import ExitCode
from entrasync.services import audit_review
from entrasync.services.audit_review import AuditFilter

EXPORT_FIELDS = [*FIELDS, "prev_hash", "hash"]
_LIST_COLUMNS = ["seq", "at", "run", "actor", "action", "user", "reason"]
_LIST_FIELDS = ["seq", "at", "run_id", "actor", "action", "user_id", "reason"]

audit_app = typer.Typer(
    help="Review the tamper-evident audit log.\n\nExample: entrasync audit list --since 7d",
    no_args_is_help=True,
)


def _flat(value: Any) -> Any:
    """A structured field (details, identifiers) as one JSON text cell."""
    return json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else value


@audit_app.command("list")
def list_(
    ctx: typer.Context,
    since: Annotated[str | None, typer.Option(help="e.g. 24h, 7d or 2026-06-01")] = None,
    until: Annotated[str | None, typer.Option(help="e.g. 2026-06-30T12:00:00Z")] = None,
    action: Annotated[str | None, typer.Option(help="e.g. user.purged or 'pending.*'")] = None,
    user: Annotated[int | None, typer.Option(help="store user id")] = None,
    run: Annotated[str | None, typer.Option(help="run id")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Audit records, oldest first, filtered.

    Example: entrasync audit list --since 7d --action user.purged
    """
    store = app_context(ctx).reader()
    moment = now()
    flt = AuditFilter(
        since=audit_review.parse_moment(since, "--since", moment) if since else None,
        until=audit_review.parse_moment(until, "--until", moment) if until else None,
        action=action,
        user_id=user,
        run_id=run,
    )
    rows = list(audit_review.records(store, flt))
    print_list(rows, as_json, _LIST_COLUMNS, lambda r: [r[k] for k in _LIST_FIELDS])


@audit_app.command("show")
def show(
    ctx: typer.Context,
    seq: Annotated[int, typer.Argument(help="record number")],
    as_json: JsonOpt = False,
) -> None:
    """One record in full.

    Example: entrasync audit show 42
    """
    record = audit_review.show(app_context(ctx).reader(), seq)
    if as_json:
        print_json(record)
        return
    for key in EXPORT_FIELDS:
        say(f"{key:<16} {_flat(record[key])}")


@audit_app.command("export")
def export(
    ctx: typer.Context,
    fmt: Annotated[str, typer.Option("--format", help="jsonl or csv")] = "jsonl",
) -> None:
    """The whole log to stdout, one record per line (jsonl) or as CSV.

    Example: entrasync audit export --format jsonl > audit.jsonl
    """
    if fmt not in {"jsonl", "csv"}:
        raise typer.BadParameter(f"--format {fmt!r}: use jsonl or csv")
    rows = audit_review.records(app_context(ctx).reader(), AuditFilter())
    if fmt == "jsonl":
        for record in rows:
            sys.stdout.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
        return
    writer = csv.writer(sys.stdout)
    writer.writerow(EXPORT_FIELDS)
    for record in rows:
        writer.writerow([_flat(record[k]) for k in EXPORT_FIELDS])


@audit_app.command("verify")
def verify(ctx: typer.Context, as_json: BareJsonOpt = False) -> None:
    """Recompute the hash chain; names the first record that was edited, removed or
    reordered and exits 1.

    Example: entrasync audit verify
    """
    result = audit_review.verify(app_context(ctx).reader())
    problem = result.problem
    if as_json:
        print_json(
            {
                "records": result.records,
                "ok": problem is None,
                "first_bad_seq": problem.seq if problem else None,
                "problem": problem.problem if problem else None,
            }
        )
    elif problem is None:
        say(f"audit chain intact: {result.records} records verified")
    else:
        say(f"audit chain BROKEN at record {problem.seq}: {problem.problem}")
    if problem is not None:
        raise typer.Exit(int(ExitCode.FAILURE))
