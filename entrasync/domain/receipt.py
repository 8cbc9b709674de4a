"""Erasure receipts (pure): what a data-protection officer answers a GDPR Art. 17 request with.

A receipt names the person (display name, Entra object id, store ids, the identifiers kept),
every erasure of their history the audit log records, and how much of their history the store
holds now. Each erasure carries its audit record's seq and hash, so it can be found in the
chain (`audit show SEQ`, `audit verify`).

Which audit records are erasures (the decision, in one place: ``ERASURE_ACTIONS``):

* ``user.purged``: every purge, whoever ran it: a cycle's Delete-group purge (also when an
  admin released it with `approve`, so the actor is `admin:<name>`), a purge of a deleted
  Entra account (`sync.on_user_deleted = "purge"`), and an admin's `users purge`.
* ``pending.removed``: an admin removed a pending user, which purges their whole history too.

Not erasures: ``pending.expired`` deletes a pending user's rows older than the retention period
(by the rows' age, not the person on request; newer rows stay), ``user.merged`` and agent merges
move history instead of deleting it, and ``purge.scheduled/cancelled/unconfirmed`` delete
nothing. `audit list --user` still shows them all.

Why each purge ran (Delete group by name and id, since when; the deleted account) is read from
the record's details when they carry it (``group_id``, ``group_name``, ``since``), else from its
reason as the planner writes it ("member of Delete group 'Leavers' (<id>) since <time> UTC").

Signing: Ed25519 over the canonical JSON of the receipt (`audit.canonical_json`, UTF-8). The
signed document is ``{"receipt": …, "signature": {"algorithm", "key_id", "value"}}``; the key id
(SHA-256 of the public key's DER SubjectPublicKeyInfo) is a hint naming the key, not signed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from entrasync.domain.audit import canonical_json

RECEIPT_KIND = "entrasync.erasure-receipt"
RECEIPT_VERSION = 1
ERASURE_ACTIONS = ("user.purged", "pending.removed")
ALGORITHM = "Ed25519"

_GROUP = re.compile(
    r"member of Delete group (?P<group>.+?) since (?P<since>\d{4}-\d\d-\d\d \d\d:\d\d) UTC"
)
_NAMED = re.compile(r"^(?P<q>['\"])(?P<name>.*)(?P=q) \((?P<id>[^()\s]+)\)$")
_DELETED = re.compile(
    r"Entra user (?P<object>\S+) deleted \(seen (?P<since>\d{4}-\d\d-\d\d \d\d:\d\d) UTC"
)


class ErasureCause(StrEnum):
    DELETE_GROUP = "delete_group"
    ENTRA_DELETED = "entra_deleted"
    ADMIN_PURGE = "admin_purge"
    PENDING_REMOVED = "pending_removed"
    OTHER = "other"


CAUSE_TITLES: Mapping[ErasureCause, str] = {
    ErasureCause.DELETE_GROUP: "Delete group purge",
    ErasureCause.ENTRA_DELETED: "purge of a deleted Entra account",
    ErasureCause.ADMIN_PURGE: "purged by an administrator",
    ErasureCause.PENDING_REMOVED: "removed from the pending queue by an administrator",
    ErasureCause.OTHER: "purge",
}


@dataclass(frozen=True)
class Subject:
    """The person as the store knows them now."""

    display_name: str | None
    entra_object_id: str | None
    user_ids: Sequence[int]
    identifiers: Sequence[Mapping[str, str]]  # kept after a purge (the person stays recognised)
    tracking: str | None


@dataclass(frozen=True)
class Remaining:
    """What the store holds of the person's history now (a live count)."""

    activity_rows: int
    agents: int


def _minute_iso(text: str) -> str:
    """`2026-06-01 12:00` (a reason's minute, UTC) -> `2026-06-01T12:00:00Z`."""
    return f"{text[:10]}T{text[11:16]}:00Z"


Group = dict[str, str | None]  # {"id", "name"}


def _named_group(text: str) -> Group:
    """`'Leavers' (<id>)` (how a reason names a group) or a bare id."""
    named = _NAMED.match(text)
    return {"id": named["id"], "name": named["name"]} if named else {"id": text, "name": None}


def _why(record: Mapping[str, Any]) -> tuple[ErasureCause, Group | None, str | None]:
    """The cause, the Delete group and since when (ISO), as far as the record tells."""
    details = record.get("details") or {}
    reason = str(record.get("reason") or "")
    if record.get("action") == "pending.removed":
        return ErasureCause.PENDING_REMOVED, None, None
    group_id = details.get("group_id") if isinstance(details, dict) else None
    if isinstance(group_id, str) and group_id:
        name, since = details.get("group_name"), details.get("since")
        group: Group = {"id": group_id, "name": name if isinstance(name, str) else None}
        return ErasureCause.DELETE_GROUP, group, since if isinstance(since, str) else None
    if found := _GROUP.search(reason):
        return ErasureCause.DELETE_GROUP, _named_group(found["group"]), _minute_iso(found["since"])
    if found := _DELETED.search(reason):
        return ErasureCause.ENTRA_DELETED, None, _minute_iso(found["since"])
    if str(record.get("actor") or "").startswith("admin:"):
        return ErasureCause.ADMIN_PURGE, None, None
    return ErasureCause.OTHER, None, None


def _count(details: Any, key: str) -> int:
    value = details.get(key) if isinstance(details, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def erasure(record: Mapping[str, Any]) -> dict[str, Any]:
    """One erasure as a receipt lists it, from its audit record."""
    details = record.get("details") or {}
    cause, group, since = _why(record)
    exported = details.get("exported_to") if isinstance(details, dict) else None
    return {
        "seq": int(record["seq"]),
        "hash": str(record["hash"]),
        "at": record["at"],
        "run_id": record.get("run_id"),
        "actor": record.get("actor"),
        "action": record["action"],
        "user_id": record.get("user_id"),
        "entra_object_id": record.get("entra_object_id"),
        "identifiers": list(record.get("identifiers") or []),
        "reason": record.get("reason"),
        "cause": cause.value,
        "group": group,
        "since": since,
        "rows_purged": _count(details, "rows_purged"),
        "agents_removed": _count(details, "agents_removed"),
        "licenses_freed": _count(details, "licenses_freed"),
        "exported_to": exported if isinstance(exported, str) else None,
    }


def build(
    *,
    query: str,
    issued_at: str,
    subject: Subject,
    records: Sequence[Mapping[str, Any]],
    remaining: Remaining,
) -> dict[str, Any]:
    """The receipt: `records` are the person's erasure audit records (seq order)."""
    erasures = [erasure(record) for record in records]
    display_name = subject.display_name or next(
        (
            r["details"]["display_name"]
            for r in reversed(records)
            if isinstance(r.get("details"), dict) and r["details"].get("display_name")
        ),
        None,
    )
    entra = subject.entra_object_id or next(
        (e["entra_object_id"] for e in reversed(erasures) if e["entra_object_id"]), None
    )
    return {
        "kind": RECEIPT_KIND,
        "version": RECEIPT_VERSION,
        "issued_at": issued_at,
        "query": query,
        "subject": {
            "display_name": display_name,
            "entra_object_id": entra,
            "user_ids": list(subject.user_ids),
            "identifiers": [dict(i) for i in subject.identifiers],
            "tracking": subject.tracking,
        },
        "erasures": erasures,
        "remaining": {"activity_rows": remaining.activity_rows, "agents": remaining.agents},
    }


def canonical_bytes(receipt: Mapping[str, Any]) -> bytes:
    return canonical_json(receipt).encode("utf-8")


def key_id(key: Ed25519PublicKey) -> str:
    """`sha256:<hex>` of the DER SubjectPublicKeyInfo: `openssl pkey -pubin -in KEY.pub
    -outform DER | sha256sum` prints the same hex."""
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(der).hexdigest()


def signed(receipt: Mapping[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    value = base64.b64encode(key.sign(canonical_bytes(receipt))).decode("ascii")
    signature = {"algorithm": ALGORITHM, "key_id": key_id(key.public_key()), "value": value}
    return {"receipt": dict(receipt), "signature": signature}


def unsigned(receipt: Mapping[str, Any]) -> dict[str, Any]:
    return {"receipt": dict(receipt), "signature": None}


class ReceiptProblem(StrEnum):
    NOT_A_RECEIPT = "not a receipt"
    UNSIGNED = "unsigned"
    WRONG_KEY = "wrong key"
    TAMPERED = "tampered"
    NOT_IN_CHAIN = "not in chain"


@dataclass(frozen=True)
class ReceiptCheck:
    problem: ReceiptProblem | None
    detail: str
    receipt: dict[str, Any] | None = None
    key_id: str | None = None
    mismatches: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem is None


def _document(text: str) -> tuple[dict[str, Any] | None, str]:
    try:
        body = json.loads(text)
    except ValueError as exc:
        return None, (
            f"not JSON ({exc}); only `audit receipt --json` output can be verified, "
            "not the text form"
        )
    except RecursionError:  # nested deeper than any receipt: not one
        return None, "not a receipt (JSON nested too deep)"
    receipt = body.get("receipt") if isinstance(body, dict) else None
    if not isinstance(receipt, dict) or receipt.get("kind") != RECEIPT_KIND:
        return None, f'no "receipt" of kind {RECEIPT_KIND!r} in it'
    return body, ""


def check(text: str, key: Ed25519PublicKey) -> ReceiptCheck:
    """Whether `text` (the `--json` form of a receipt) is a receipt signed by `key`."""
    body, why = _document(text)
    if body is None:
        return ReceiptCheck(ReceiptProblem.NOT_A_RECEIPT, why)
    receipt: dict[str, Any] = body["receipt"]
    signature = body.get("signature")
    expected = key_id(key)
    if signature is None:
        detail = "the receipt carries no signature (no audit.signing_key_file where it was made)"
        return ReceiptCheck(ReceiptProblem.UNSIGNED, detail, receipt, expected)
    if not isinstance(signature, dict) or signature.get("algorithm") != ALGORITHM:
        detail = f"the signature is not an {ALGORITHM} signature block"
        return ReceiptCheck(ReceiptProblem.TAMPERED, detail, receipt, expected)
    claimed = signature.get("key_id")
    if isinstance(claimed, str) and claimed != expected:
        detail = f"signed by key {claimed}, not by the given public key {expected}"
        return ReceiptCheck(ReceiptProblem.WRONG_KEY, detail, receipt, expected)
    try:
        raw = base64.b64decode(str(signature.get("value")), validate=True)
        key.verify(raw, canonical_bytes(receipt))
    except (InvalidSignature, binascii.Error, ValueError):
        detail = (
            f"the signature does not hold for key {expected}: the receipt or its signature "
            "was changed after signing"
        )
        return ReceiptCheck(ReceiptProblem.TAMPERED, detail, receipt, expected)
    return ReceiptCheck(None, f"signature holds (key {expected})", receipt, expected)


def chain_mismatches(receipt: Mapping[str, Any], hashes: Mapping[int, str | None]) -> list[str]:
    """The receipt's erasures whose audit record is not in the chain as receipted: `hashes`
    maps each erasure's seq to the chain's hash at that seq (None: no such record)."""
    found = []
    for entry in receipt.get("erasures") or []:
        seq = int(entry["seq"])
        now = hashes.get(seq)
        if now is None:
            found.append(f"record {seq} is not in the audit log")
        elif now != entry["hash"]:
            found.append(f"record {seq} has hash {now} in the log, not {entry['hash']}")
    return found
