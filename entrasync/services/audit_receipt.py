"""Erasure receipts: making one for a person (read-only) and verifying one.

`erasure_receipt` reads the person, their erasure records and the history left in one
snapshot of the store, and signs the receipt with `audit.signing_key_file` when it is set.
`verify_receipt` needs only the receipt file and the public key (no config, no store), so a
data-protection officer can check it on another machine; `in_chain` is the optional check
against a store at hand.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from entrasync.domain import receipt as receipts
from entrasync.domain.audit import format_at
from entrasync.domain.receipt import ReceiptCheck, ReceiptProblem, Remaining, Subject
from entrasync.errors import InputError, NotFound
from entrasync.services.audit_checkpoint import read_public_key
from entrasync.store import receipts as receipt_rows
from entrasync.store.db import Store

__all__ = ["ReceiptCheck", "ReceiptProblem", "erasure_receipt", "in_chain", "verify_receipt"]


def erasure_receipt(
    store: Store, ident: str, now: datetime, key: Ed25519PrivateKey | None = None
) -> dict[str, Any]:
    """The receipt document (`{"receipt": …, "signature": …}`) for the person `ident` names.

    NotFound when no record matches `ident`, or when the person has no erasure on record;
    InputError when `ident` names more than one person (an employee id that is also a store
    id, say: a `kind:` prefix tells them apart)."""
    with store.reading() as session:
        person = receipt_rows.person(session, ident)
        records = receipt_rows.erasure_records(session, ident, receipts.ERASURE_ACTIONS)
    if person is None and not records:
        raise NotFound(f"no user matches {ident!r} (try a UPN, email, employee id, logon or id)")
    if person is not None and len(person.roots) > 1:
        ids = ", ".join(str(i) for i in person.roots)
        raise InputError(
            f"{ident!r} names more than one person (store ids {ids}): use a prefix such as "
            f"id:, upn:, email:, employee_id: or logon: to say which"
        )
    if not records:
        raise NotFound(
            f"no erasure on record for {ident!r}: their history was never purged "
            f"(`entrasync audit list --user {ident}` shows what was recorded)"
        )
    subject = Subject(None, None, [], [], None)
    remaining = Remaining(0, 0)
    if person is not None:
        subject = Subject(
            person.display_name,
            person.entra_object_id,
            person.user_ids,
            person.identifiers,
            person.tracking,
        )
        remaining = Remaining(person.activity_rows, person.agents)
    receipt = receipts.build(
        query=ident, issued_at=format_at(now), subject=subject, records=records, remaining=remaining
    )
    return receipts.signed(receipt, key) if key is not None else receipts.unsigned(receipt)


def verify_receipt(path: Path, public_key: Path) -> ReceiptCheck:
    """Whether the receipt in `path` (the `--json` form) is signed by `public_key`."""
    key = read_public_key(public_key)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return ReceiptCheck(ReceiptProblem.NOT_A_RECEIPT, "not UTF-8 text")
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror or exc}") from None
    return receipts.check(text, key)


def in_chain(store: Store, checked: ReceiptCheck) -> ReceiptCheck:
    """`checked`, failed as NOT_IN_CHAIN when a receipted audit record is not (or no longer)
    in the store's log with the receipted hash."""
    if not checked.ok or checked.receipt is None:
        return checked
    seqs = [int(e["seq"]) for e in checked.receipt.get("erasures") or []]
    with store.reading() as session:
        hashes = receipt_rows.chain_hashes(session, seqs)
    mismatches = receipts.chain_mismatches(checked.receipt, hashes)
    if not mismatches:
        detail = f"{checked.detail}; its {len(seqs)} audit records are in the store's log"
        return ReceiptCheck(None, detail, checked.receipt, checked.key_id)
    return ReceiptCheck(
        ReceiptProblem.NOT_IN_CHAIN,
        "; ".join(mismatches),
        checked.receipt,
        checked.key_id,
        mismatches,
    )
