"""Erasure receipts, pure: why each purge ran (read from the audit record), and the signature
over the canonical JSON (what `audit verify-receipt` checks)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from entrasync.domain import receipt
from entrasync.domain.receipt import ReceiptProblem, Remaining, Subject

GROUP = "73f6e53d-1c2b-4a8e-9d7f-0b1c2d3e4f50"


def _record(reason: str, *, action: str = "user.purged", actor: str = "entrasync") -> Any:
    return {
        "seq": 7,
        "hash": "ab" * 32,
        "at": "2026-06-02T12:00:00.000000Z",
        "run_id": "r-1",
        "actor": actor,
        "action": action,
        "user_id": 3,
        "entra_object_id": "o-1",
        "identifiers": [{"kind": "upn", "value": "ann@x.test"}],
        "reason": reason,
        "details": {"rows_purged": 4, "agents_removed": 1, "licenses_freed": 1},
    }


@pytest.mark.parametrize(
    ("reason", "action", "actor", "cause", "group", "since"),
    [
        (
            f"member of Delete group 'Leavers' ({GROUP}) since 2026-06-01 12:00 UTC "
            "(purge delay 24h passed)",
            "user.purged",
            "admin:jane",  # released by `approve`: still a Delete-group purge
            "delete_group",
            {"id": GROUP, "name": "Leavers"},
            "2026-06-01T12:00:00Z",
        ),
        (
            f"member of Delete group \"O'Brien's leavers\" ({GROUP}) since 2026-06-01 12:00 UTC",
            "user.purged",
            "entrasync",
            "delete_group",
            {"id": GROUP, "name": "O'Brien's leavers"},
            "2026-06-01T12:00:00Z",
        ),
        (
            f"member of Delete group {GROUP} since 2026-06-01 12:00 UTC",  # name never read
            "user.purged",
            "entrasync",
            "delete_group",
            {"id": GROUP, "name": None},
            "2026-06-01T12:00:00Z",
        ),
        (
            "Entra user o-1 deleted (seen 2026-05-30 08:15 UTC; sync.on_user_deleted = purge)",
            "user.purged",
            "entrasync",
            "entra_deleted",
            None,
            "2026-05-30T08:15:00Z",
        ),
        ("purged by an administrator", "user.purged", "admin:dpo", "admin_purge", None, None),
        (
            "removed from the pending queue by an administrator",
            "pending.removed",
            "admin:dpo",
            "pending_removed",
            None,
            None,
        ),
    ],
)
def test_why_a_purge_ran(
    reason: str, action: str, actor: str, cause: str, group: Any, since: str | None
) -> None:
    entry = receipt.erasure(_record(reason, action=action, actor=actor))
    assert (entry["cause"], entry["group"], entry["since"]) == (cause, group, since)
    assert (entry["rows_purged"], entry["agents_removed"], entry["licenses_freed"]) == (4, 1, 1)


def test_structured_details_win_over_the_reason() -> None:
    record = _record("member of Delete group 'Old name' (g-1) since 2026-06-01 12:00 UTC")
    record["details"] |= {"group_id": "g-2", "group_name": "New", "since": "2026-05-01T00:00:00Z"}
    entry = receipt.erasure(record)
    assert (entry["group"], entry["since"]) == (
        {"id": "g-2", "name": "New"},
        "2026-05-01T00:00:00Z",
    )


def _document(key: Ed25519PrivateKey | None) -> dict[str, Any]:
    body = receipt.build(
        query="ann@x.test",
        issued_at="2026-06-03T09:00:00.000000Z",
        subject=Subject("Ann Ëxample", "o-1", [3], [{"kind": "upn", "value": "ann@x.test"}], None),
        records=[_record("purged by an administrator", actor="admin:dpo")],
        remaining=Remaining(0, 0),
    )
    return receipt.signed(body, key) if key else receipt.unsigned(body)


def test_signature_round_trip_and_each_failure() -> None:
    key = Ed25519PrivateKey.generate()
    public = key.public_key()
    text = json.dumps(_document(key), indent=2, ensure_ascii=False)
    assert receipt.check(text, public).ok
    edited = json.loads(text)
    edited["receipt"]["subject"]["display_name"] = "Someone else"
    assert receipt.check(json.dumps(edited), public).problem == ReceiptProblem.TAMPERED
    other = Ed25519PrivateKey.generate().public_key()
    assert receipt.check(text, other).problem == ReceiptProblem.WRONG_KEY
    edited = json.loads(text)
    edited["signature"]["key_id"] = receipt.key_id(other)  # lies about the key: still caught
    assert receipt.check(json.dumps(edited), other).problem == ReceiptProblem.TAMPERED
    unsigned = json.dumps(_document(None))
    assert receipt.check(unsigned, public).problem == ReceiptProblem.UNSIGNED
    for bad in ("", "[]", '{"receipt": {"kind": "other"}}', "ERASURE RECEIPT for x"):
        assert receipt.check(bad, public).problem == ReceiptProblem.NOT_A_RECEIPT


def test_chain_mismatches_name_missing_and_changed_records() -> None:
    body = _document(None)["receipt"]
    assert receipt.chain_mismatches(body, {7: "ab" * 32}) == []
    assert receipt.chain_mismatches(body, {7: None}) == ["record 7 is not in the audit log"]
    (changed,) = receipt.chain_mismatches(body, {7: "cd" * 32})
    assert changed.startswith("record 7 has hash cdcd")


def test_json_nested_too_deep_is_not_a_receipt_and_no_crash() -> None:
    from entrasync.domain import receipt as receipts

    deep = "[" * 100_000 + "]" * 100_000
    body, problem = receipts._document(deep)
    assert body is None
    assert "nested too deep" in problem
