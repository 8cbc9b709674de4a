"""`entrasync audit list|show|export|verify|keygen|checkpoint|forward`."""

from __future__ import annotations

import csv
import json
import os
import socket
import sys
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer

from entrasync.cli.context import actor_name, app_context, now
from entrasync.cli.options import (
    ActorOpt,
    BareJsonOpt,
    CheckpointsOpt,
    JsonOpt,
    KeyPrefixOpt,
)
from entrasync.cli.output import print_entries, print_json, say
from entrasync.domain.audit import FIELDS
from entrasync.errors import ConfigError, ExitCode
from entrasync.services import audit_checkpoint, audit_forward, audit_review
from entrasync.services.audit_review import AuditFilter

EXPORT_FIELDS = [*FIELDS, "prev_hash", "hash"]
# The reason goes on a line of its own under its record (see print_entries); the run id is
# in `audit show` and --json: on 80 columns there is room for these five and no more.
_LIST_COLUMNS = ["seq", "time (UTC)", "actor", "action", "person"]
VerifyKeysOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--public-key",
        help="Ed25519 public key (PEM): also check the signed checkpoints. Repeat it for the "
        "keys used before a rotation.",
    ),
]
FromSeqOpt = Annotated[
    int | None,
    typer.Option(
        "--from",
        min=1,
        help="Deliver again from this record on (after checking the log with `audit verify`); "
        "audited.",
    ),
]

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
    user: Annotated[
        str | None,
        typer.Option(
            help="a person by any identifier, now or before (UPN, email, employee id, logon, "
            "Entra object id, store id; `upn:`… to be exact), merged records included"
        ),
    ] = None,
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
        run_id=run,
        person=user,
    )
    rows = list(audit_review.listing(store, flt))
    if as_json:
        print_json(rows)
    else:
        print_entries(_LIST_COLUMNS, [(_list_cells(r), r["reason"]) for r in rows])


def _list_cells(record: dict[str, Any]) -> list[str]:
    # `2026-06-01T12:00:00.000000Z` -> `2026-06-01 12:00`; the full time is in `audit show`.
    at = str(record["at"])
    return [
        str(record["seq"]),
        f"{at[:10]} {at[11:16]}",
        record["actor"],
        record["action"],
        record["person"],
    ]


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
        if key == "user_id":
            say(f"{'person':<16} {record['person']}")


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
def verify(
    ctx: typer.Context,
    as_json: BareJsonOpt = False,
    public_key: VerifyKeysOpt = None,
    checkpoints: CheckpointsOpt = None,
) -> None:
    """Recompute the hash chain; names the first record that was edited, removed or
    reordered and exits 1. With --public-key, also checks the signed checkpoints (in the store
    and in --checkpoints DIR) and names truncation, rewrite and forged checkpoints; give
    --public-key once per signing key the log has had (after a key rotation).

    Example: entrasync audit verify --public-key audit.pub --checkpoints /srv/checkpoints
    """
    if public_key:
        _verify_signed(ctx, public_key, checkpoints, as_json)
        return
    if checkpoints is not None:
        raise typer.BadParameter("--checkpoints needs --public-key to check their signatures")
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
    if not as_json:
        say(audit_checkpoint.UNDETECTED_WITHOUT_KEY)
    if problem is not None:
        raise typer.Exit(int(ExitCode.FAILURE))


def _verify_signed(
    ctx: typer.Context, public_keys: list[Path], checkpoints: Path | None, as_json: bool
) -> None:
    keys = [audit_checkpoint.read_public_key(path) for path in public_keys]
    result = audit_checkpoint.verify_signed(app_context(ctx).reader(), keys, checkpoints)
    problem = result.problem
    if as_json:
        print_json(
            {
                "records": result.records,
                "ok": result.ok,
                "first_bad_seq": problem.seq if problem else None,
                "problem": problem.problem if problem else None,
                "checkpoints": result.checkpoints,
                "findings": [
                    {
                        "problem": f.problem.value,
                        "seq": f.seq,
                        "detail": f.detail,
                        "source": f.source,
                    }
                    for f in result.findings
                ],
            }
        )
    else:
        _say_signed(result)
    if not result.ok:
        raise typer.Exit(int(ExitCode.FAILURE))


def _say_signed(result: audit_checkpoint.SignedVerification) -> None:
    problem = result.problem
    if problem is None:
        say(f"audit chain intact: {result.records} records verified")
    else:
        say(f"audit chain BROKEN at record {problem.seq}: {problem.problem}")
    for finding in result.findings:
        say(f"{finding.problem.value.upper()} ({finding.source}): {finding.detail}")
    if result.checkpoints == 0:
        say("no signed checkpoints found: truncation and rewrite cannot be detected")
    elif not result.findings:
        say(f"{result.checkpoints} signed checkpoints hold")


@audit_app.command("keygen")
def keygen(out: KeyPrefixOpt = Path("entrasync-audit")) -> None:
    """Make an Ed25519 key pair for signed checkpoints: PREFIX.key (private, mode 0600; set
    audit.signing_key_file to it) and PREFIX.pub (for `audit verify --public-key`).

    Example: entrasync audit keygen --out /etc/entrasync/audit
    """
    private, public = audit_checkpoint.write_key_pair(out)
    say(f"private key: {private} (mode 0600; keep it away from the store)")
    say(f"public key:  {public}")


@audit_app.command("checkpoint")
def checkpoint(ctx: typer.Context) -> None:
    """Sign the audit chain's head now with audit.signing_key_file and store the checkpoint
    (and append it to audit.checkpoint_dir).

    Example: entrasync audit checkpoint
    """
    context = app_context(ctx)
    settings = context.config.audit
    if settings.signing_key_file is None:
        raise ConfigError("audit.signing_key_file is not set: nothing to sign with")
    key = audit_checkpoint.read_private_key(settings.signing_key_file)
    signed = audit_checkpoint.make_checkpoint(context.store(), key, now(), settings.checkpoint_dir)
    if signed is None:
        say("audit log is empty: no head to sign")
        return
    point = signed.checkpoint
    say(f"signed checkpoint: record {point.seq} {point.hash} at {point.at}")


@audit_app.command("forward")
def forward(
    ctx: typer.Context,
    from_seq: FromSeqOpt = None,
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Send the records the collector (audit.forward) has not received yet, now, in order;
    the daemon does this on its own every few seconds. Exit 69 when the collector is
    unreachable, 78 when it refuses the records (they wait in the store either way), and 1
    when the log no longer holds the last record delivered (cut or rewritten): look with
    `audit verify`, then resend with --from.

    Example: entrasync audit forward --from 1200
    """
    context = app_context(ctx)
    wired = audit_forward.sender_for(context.config.audit)
    if wired is None:
        raise ConfigError("audit.forward is not set: there is no collector to send to")
    target, sender = wired
    store = context.store()
    if from_seq is not None:
        audit_forward.rewind(store, target, from_seq, now(), actor_name(actor))
    owner = f"cli:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    result = audit_forward.forward_pending(store, target, sender, now, owner)
    if as_json:
        print_json(result.as_dict())
    else:
        _say_forwarded(result)
    if result.error is not None:
        raise result.error


def _say_forwarded(result: audit_forward.ForwardResult) -> None:
    backlog = result.backlog
    if result.busy:
        say(f"{backlog.target}: another process is forwarding now; nothing sent")
    say(
        f"{backlog.target}: sent {result.sent} record(s), delivered up to record "
        f"{backlog.delivered_seq}, {backlog.waiting} waiting"
    )
