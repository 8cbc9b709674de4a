"""The audit hash chain: canonical hashing and verification (pure)."""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from entrasync.domain.audit import (
    ACTIONS,
    FIELDS,
    GENESIS,
    AuditEvent,
    admin_actor,
    canonical_json,
    format_at,
    hash_of_texts,
    record_hash,
    verify_chain,
)


def make_chain(n: int) -> list[dict[str, Any]]:
    chain: list[dict[str, Any]] = []
    prev = GENESIS
    for seq in range(1, n + 1):
        record: dict[str, Any] = {
            "seq": seq,
            "at": format_at(datetime(2026, 6, 1, tzinfo=UTC) + timedelta(minutes=seq)),
            "run_id": None,
            "actor": "entrasync",
            "action": "user.untracked",
            "user_id": seq,
            "entra_object_id": None,
            "identifiers": [{"kind": "upn", "value": f"u{seq}@contoso.com"}],
            "reason": f"reason {seq}",
            "details": {"before": {"tracking": "tracked"}, "n": seq},
        }
        record["prev_hash"] = prev
        record["hash"] = record_hash(record, prev)
        prev = record["hash"]
        chain.append(record)
    return chain


def test_intact_chain_verifies() -> None:
    assert verify_chain(make_chain(5)) is None
    assert verify_chain([]) is None


def test_first_record_links_to_genesis() -> None:
    chain = make_chain(2)
    assert chain[0]["prev_hash"] == GENESIS == "0" * 64
    assert chain[1]["prev_hash"] == chain[0]["hash"]


def test_canonical_hash_is_stable() -> None:
    record = make_chain(1)[0]
    # Key order and extra keys (prev_hash, hash) do not matter; a known digest does not change.
    shuffled = dict(reversed(list(record.items())))
    shuffled["details"] = dict(reversed(list(record["details"].items())))
    assert record_hash(shuffled, GENESIS) == record_hash(record, GENESIS)
    assert canonical_json({"b": 1, "a": [1, "é"]}) == '{"a":[1,"é"],"b":1}'
    assert record["hash"] == record_hash(record, GENESIS)
    assert len(record["hash"]) == 64


def test_hash_is_sha256_over_canonical_json_and_prev_hash() -> None:
    import hashlib
    import json

    record = make_chain(1)[0]
    body = {name: record[name] for name in FIELDS}
    payload = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    expected = hashlib.sha256((payload + GENESIS).encode("utf-8")).hexdigest()
    assert record["hash"] == expected


_TEXT = st.text(max_size=12)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(
    seq=st.integers(min_value=1),
    run_id=st.none() | _TEXT,
    action=st.sampled_from(sorted(ACTIONS)),
    user_id=st.none() | st.integers(),
    entra_object_id=st.none() | _TEXT,
    identifiers=st.lists(st.fixed_dictionaries({"kind": _TEXT, "value": _TEXT}), max_size=3),
    reason=_TEXT,
    details=st.dictionaries(_TEXT, _JSON, max_size=4),
)
def test_a_hash_from_each_fields_text_is_the_hash_of_the_whole_record(
    seq: int,
    run_id: str | None,
    action: str,
    user_id: int | None,
    entra_object_id: str | None,
    identifiers: list[dict[str, str]],
    reason: str,
    details: dict[str, Any],
) -> None:
    """Bulk writers hash a record from its fields' canonical texts (`hash_of_texts`, each
    value encoded once): that must be the SHA-256 of the whole record's canonical JSON, or
    `audit verify` would reject what they wrote."""
    record = {
        "seq": seq,
        "at": format_at(datetime(2026, 6, 1, tzinfo=UTC)),
        "run_id": run_id,
        "actor": "entrasync",
        "action": action,
        "user_id": user_id,
        "entra_object_id": entra_object_id,
        "identifiers": identifiers,
        "reason": reason,
        "details": details,
    }
    whole = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    expected = hashlib.sha256((whole + GENESIS).encode("utf-8")).hexdigest()
    texts = {name: canonical_json(value) for name, value in record.items()}
    assert hash_of_texts(texts, GENESIS) == expected
    assert record_hash(record, GENESIS) == expected


@pytest.mark.parametrize("field", [f for f in FIELDS if f != "seq"])
def test_editing_any_field_is_detected(field: str) -> None:
    chain = make_chain(4)
    edited = copy.deepcopy(chain)
    value = edited[2][field]
    edited[2][field] = {"x": 1} if isinstance(value, dict) else "tampered"
    problem = verify_chain(edited)
    assert problem is not None
    assert problem.seq == 3
    assert "edited" in problem.problem


def test_editing_a_nested_detail_is_detected() -> None:
    chain = make_chain(3)
    chain[1]["details"]["before"]["tracking"] = "untracked"
    problem = verify_chain(chain)
    assert problem is not None
    assert problem.seq == 2


def test_rehashing_an_edited_record_breaks_the_next_link() -> None:
    chain = make_chain(4)
    chain[1]["reason"] = "tampered"
    chain[1]["hash"] = record_hash(chain[1], chain[1]["prev_hash"])
    problem = verify_chain(chain)
    assert problem is not None
    assert problem.seq == 3
    assert "prev_hash" in problem.problem


def test_removal_is_detected() -> None:
    chain = make_chain(5)
    del chain[2]
    problem = verify_chain(chain)
    assert problem is not None
    assert problem.seq == 4
    assert "expected record 3" in problem.problem


def test_removing_the_first_record_is_detected() -> None:
    problem = verify_chain(make_chain(3)[1:])
    assert problem is not None
    assert problem.seq == 2


def test_removal_with_renumbering_is_detected() -> None:
    chain = make_chain(5)
    del chain[2]
    for index, record in enumerate(chain, start=1):
        record["seq"] = index
    problem = verify_chain(chain)
    assert problem is not None
    assert problem.seq == 3


def test_reorder_is_detected() -> None:
    chain = make_chain(5)
    chain[1], chain[2] = chain[2], chain[1]
    problem = verify_chain(chain)
    assert problem is not None
    assert problem.seq == 3  # the first record out of place


def test_swapping_contents_but_keeping_seq_is_detected() -> None:
    chain = make_chain(5)
    a, b = chain[1], chain[2]
    for key in [k for k in a if k != "seq"]:
        a[key], b[key] = b[key], a[key]
    problem = verify_chain(chain)
    assert problem is not None
    assert problem.seq == 2


def test_format_at_is_utc_with_microseconds() -> None:
    moment = datetime(2026, 6, 1, 11, 0, 0, 5, tzinfo=timezone(timedelta(hours=2)))
    assert format_at(moment) == "2026-06-01T09:00:00.000005Z"


def test_unknown_action_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown audit action"):
        AuditEvent("user.deleted", "nope")
    assert "user.purged" in ACTIONS
    assert admin_actor("alice") == "admin:alice"
