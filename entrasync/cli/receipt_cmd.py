"""`entrasync audit receipt|verify-receipt`: erasure receipts (registered on `audit_app`)."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from entrasync.cli.audit_cmd import audit_app
from entrasync.cli.context import app_context, now
from entrasync.cli.options import IdentArg, JsonOpt
from entrasync.cli.output import print_json, say
from entrasync.domain.receipt import CAUSE_TITLES, ErasureCause
from entrasync.errors import ExitCode
from entrasync.services import audit_checkpoint, audit_receipt
from entrasync.services.audit_receipt import ReceiptCheck

WIDTH = 80  # a receipt is a document: the same lines on any terminal
_LABEL = 16  # "  member since  " and a 64-character hash make exactly 80
_KIND_ORDER = {"upn": 0, "email": 1, "employee_id": 2, "logon": 3}

ReceiptFileArg = Annotated[
    Path, typer.Argument(help="A receipt saved from `audit receipt --json`.")
]
ReceiptKeyOpt = Annotated[
    Path,
    typer.Option(
        "--public-key",
        help="Ed25519 public key (PEM) of audit.signing_key_file.",
        metavar="FILE",
    ),
]
InStoreOpt = Annotated[
    bool,
    typer.Option(
        "--in-store",
        help="Also check that each receipted audit record (seq, hash) is in the store's log.",
    ),
]


@audit_app.command("receipt")
def receipt(ctx: typer.Context, ident: IdentArg, as_json: JsonOpt = False) -> None:
    """An erasure receipt for a purged person, to answer a GDPR article 17 request: who,
    each purge, when and why, rows and agents removed, licenses freed, the audit record's seq
    and hash, and what remains now; signed with audit.signing_key_file when it is set.
    Read-only.

    Example: entrasync audit receipt jdoe@contoso.com --json > receipt.json
    """
    context = app_context(ctx)
    key_file = context.config.audit.signing_key_file
    key = audit_checkpoint.read_private_key(key_file) if key_file is not None else None
    document = audit_receipt.erasure_receipt(context.reader(), ident, now(), key)
    if as_json:
        print_json(document)
        return
    for line in receipt_lines(document):
        say(line)


@audit_app.command("verify-receipt")
def verify_receipt(
    ctx: typer.Context,
    file: ReceiptFileArg,
    public_key: ReceiptKeyOpt,
    in_store: InStoreOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Check an erasure receipt's signature with the public key alone (no config or store
    needed); exits 1 naming the problem: tampered, wrong key, unsigned or not a receipt
    (only the --json form of `audit receipt` verifies). --in-store also checks the receipted
    audit records against the store's log.

    Example: entrasync audit verify-receipt receipt.json --public-key audit.pub
    """
    checked = audit_receipt.verify_receipt(file, public_key)
    if in_store:
        checked = audit_receipt.in_chain(app_context(ctx).reader(), checked)
    if as_json:
        print_json(_check_json(checked))
    elif checked.ok:
        say(f"receipt verified: {checked.detail}")
    else:
        problem = checked.problem.value.upper() if checked.problem else ""
        say(f"RECEIPT {problem}: {checked.detail}")
    if not checked.ok:
        raise typer.Exit(int(ExitCode.FAILURE))


def _check_json(checked: ReceiptCheck) -> dict[str, Any]:
    receipt = checked.receipt or {}
    return {
        "ok": checked.ok,
        "problem": checked.problem.value if checked.problem else None,
        "detail": checked.detail,
        "key_id": checked.key_id,
        "seqs": [e.get("seq") for e in receipt.get("erasures") or []],
        "mismatches": checked.mismatches,
    }


# --- the text form -------------------------------------------------------------------------


def _field(label: str, value: str) -> Iterator[str]:
    """`  label         value`, the value wrapped under itself within WIDTH."""
    lines = textwrap.wrap(value, WIDTH - _LABEL, break_on_hyphens=False, break_long_words=True) or [
        ""
    ]
    yield f"  {label:<{_LABEL - 2}}{lines[0]}".rstrip()
    yield from (" " * _LABEL + line for line in lines[1:])


def _time(at: str | None) -> str:
    """`2026-06-01T12:00:00.123456Z` -> `2026-06-01 12:00:00 UTC`."""
    return f"{at[:10]} {at[11:19]} UTC" if at else "unknown"


def _names(identifiers: Sequence[Mapping[str, str]]) -> str:
    """`upn a@x.com, email …, logon …`: the most readable first."""
    ranked = sorted(identifiers, key=lambda i: _KIND_ORDER.get(str(i.get("kind")), 9))
    return ", ".join(f"{i.get('kind')} {i.get('value')}" for i in ranked) or "none"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def receipt_lines(document: Mapping[str, Any]) -> Iterator[str]:
    """The receipt for a person to read, 80 columns wide."""
    receipt = document["receipt"]
    subject = receipt["subject"]
    yield f"ERASURE RECEIPT for {receipt['query']}"
    yield f"issued {_time(receipt['issued_at'])} by entrasync"
    yield ""
    yield "Person"
    yield from _field("name", subject.get("display_name") or "unknown")
    yield from _field("Entra object", subject.get("entra_object_id") or "none linked")
    yield from _field("store ids", ", ".join(map(str, subject.get("user_ids") or [])) or "none")
    yield from _field("tracking", subject.get("tracking") or "unknown")
    erasures = receipt["erasures"]
    for number, entry in enumerate(erasures, 1):
        yield ""
        yield from _erasure_lines(entry, number, len(erasures))
    yield ""
    yield from _remaining_lines(receipt)
    yield ""
    yield from _signature_lines(document)


def _erasure_lines(entry: Mapping[str, Any], number: int, total: int) -> Iterator[str]:
    title = CAUSE_TITLES.get(ErasureCause(entry["cause"]), entry["cause"])
    yield f"Erasure {number} of {total}: {title}"
    yield from _field("ran", _time(entry["at"]))
    if entry.get("run_id"):
        yield from _field("run", str(entry["run_id"]))
    yield from _field("by", str(entry.get("actor") or "unknown"))
    yield from _field("why", str(entry.get("reason") or ""))
    group = entry.get("group")
    if group:
        named = f"{group['name']} ({group['id']})" if group.get("name") else group["id"]
        yield from _field("group", named)
    if entry.get("since"):
        label = "member since" if group else "since"
        yield from _field(label, _time(entry["since"]))
    yield from _field("named then", _names(entry.get("identifiers") or []))
    removed = (
        f"{_plural(entry['rows_purged'], 'activity row')}, "
        f"{_plural(entry['agents_removed'], 'agent')}; "
        f"{_plural(entry['licenses_freed'], 'license')} freed"
    )
    yield from _field("removed", removed)
    if entry.get("exported_to"):
        yield from _field("exported to", f"{entry['exported_to']} (a copy made before the purge)")
    yield from _field("audit record", f"{entry['seq']} (entrasync audit show {entry['seq']})")
    yield from _field("record hash", entry["hash"])


def _remaining_lines(receipt: Mapping[str, Any]) -> Iterator[str]:
    left = receipt["remaining"]
    rows, agents = left["activity_rows"], left["agents"]
    yield f"Now (counted {_time(receipt['issued_at'])})"
    state = (
        "none of this person's history remains"
        if rows == 0
        else "held now: see `entrasync users show`"
    )
    yield from _field("activity rows", f"{rows} ({state})")
    yield from _field("agents", str(agents))
    kept = _names(receipt["subject"].get("identifiers") or [])
    yield from _field("kept", f"identifiers {kept} (so the person stays recognised)")


def _signature_lines(document: Mapping[str, Any]) -> Iterator[str]:
    signature = document.get("signature")
    if not signature:
        yield "Unsigned: audit.signing_key_file is not set. Each audit record above can"
        yield "be checked with `entrasync audit show SEQ` and `entrasync audit verify`."
        return
    yield f"Signed ({signature['algorithm']}) by key"
    yield f"  {signature['key_id']}"
    yield "Verify the --json form: entrasync audit verify-receipt FILE --public-key KEY.pub"
