"""The audit record and its hash chain (pure).

``hash = sha256(canonical JSON of the record's fields + prev_hash)``. Canonical JSON: sorted keys,
no insignificant white space, UTF-8. The first record's ``prev_hash`` is ``GENESIS``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from json.encoder import encode_basestring
from typing import Any

from entrasync.domain.actions import ACTIONS as KIND_SPECS

GENESIS = "0" * 64
SYSTEM_ACTOR = "entrasync"

# The fixed vocabulary of actions (extend here or in domain/actions.py, never ad hoc): what
# the cycle's action kinds record, and what admins, pending review, ingest and the account do.
ACTIONS = frozenset(
    {spec.audit_action for spec in KIND_SPECS.values() if spec.audit_action is not None}
    | {
        "user.untracked",
        "user.tracked",
        "user.purged",
        "user.merged",
        "ingest.completed",
        "account.settings_changed",
        "account.grace_started",
        "account.grace_reset",
        "account.locked",
        "account.unlocked",
        "pending.queued",
        "pending.approved",
        "pending.assigned",
        "pending.merged",
        "pending.removed",
        "pending.expired",
        "action.held",
        "action.released",
        "group.suspect",
        "group.recovered",
        "group.accepted",
        "purge.unconfirmed",
        "audit.forward_rewound",
        "tally.repaired",
    }
)

FIELDS = (
    "seq",
    "at",
    "run_id",
    "actor",
    "action",
    "user_id",
    "entra_object_id",
    "identifiers",
    "reason",
    "details",
)
_SORTED_FIELDS = sorted(FIELDS)  # plain names: each is its own JSON string's content


def format_at(moment: datetime) -> str:
    """The one timestamp format the chain hashes: UTC, microseconds, trailing Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def admin_actor(name: str) -> str:
    return f"admin:{name}"


@dataclass(frozen=True)
class AuditEvent:
    """What a service wants recorded; seq, time and hashes are added when it is appended."""

    action: str
    reason: str
    user_id: int | None = None
    entra_object_id: str | None = None
    identifiers: list[dict[str, str]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown audit action {self.action!r}")


_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
)


def canonical_json(value: Any) -> str:
    # The encoder's own text for these, without its per-call setup (a record has several).
    if value is None:
        return "null"
    if type(value) is int:
        return int.__repr__(value)
    if type(value) is str:
        return encode_basestring(value)
    return _CANONICAL.encode(value)


def record_hash(record: Mapping[str, Any], prev_hash: str) -> str:
    return hash_of_texts({name: canonical_json(record[name]) for name in FIELDS}, prev_hash)


def hash_of_texts(texts: Mapping[str, str], prev_hash: str) -> str:
    """`record_hash` from each field's canonical JSON (`texts`: field -> its text): the
    record's canonical JSON is its fields' texts under their sorted names, so a writer that
    also stores some fields as JSON text (audit records in bulk) encodes each value once."""
    body = ",".join(f'"{name}":{texts[name]}' for name in _SORTED_FIELDS)
    return hashlib.sha256(f"{{{body}}}{prev_hash}".encode()).hexdigest()


@dataclass(frozen=True)
class ChainBreak:
    seq: int
    problem: str


def verify_chain(records: Iterable[Mapping[str, Any]]) -> ChainBreak | None:
    """The first record whose link or hash does not hold, or None when the chain is intact.

    Records must come in ``seq`` order. An edited record fails its hash; a removed or
    reordered one breaks the link or the sequence.
    """
    expected_prev = GENESIS
    expected_seq = 1
    for record in records:
        seq = int(record["seq"])
        if seq != expected_seq:
            return ChainBreak(seq, f"sequence gap: expected record {expected_seq}, found {seq}")
        if record["prev_hash"] != expected_prev:
            return ChainBreak(seq, "prev_hash does not match the hash of the record before it")
        if record_hash(record, record["prev_hash"]) != record["hash"]:
            return ChainBreak(seq, "hash does not match the record's content (edited)")
        expected_prev = record["hash"]
        expected_seq += 1
    return None
